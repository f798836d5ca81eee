"""Corpus-level distinct-n over whitespace words (as RL4LMs' diversity metrics)."""


def distinct_n(texts: list[str], n: int) -> float:
    ngrams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0
