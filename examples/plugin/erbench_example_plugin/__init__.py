"""An erbench plugin: the method `soft-reset` and the task `imdb-lexicon`, declared in this folder's recipes."""
