"""The one exception type the CLI turns into a one-line message and exit code 2."""


class ErbenchError(Exception):
    """A user-facing problem: the message names what is wrong and how to fix it."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix
