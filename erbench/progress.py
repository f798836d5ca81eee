"""Rich progress bars for long work; quiet when ERBENCH_QUIET is set (tests, CI logs)."""

import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int):
    """Yields advance(n=1, **fields); the bar shows `info` from the latest call."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
        disable=bool(os.environ.get("ERBENCH_QUIET")),
    )
    with progress:
        bar = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = ""):
            progress.update(bar, advance=n, info=info)

        yield advance


def say(message: str) -> None:
    if not os.environ.get("ERBENCH_QUIET"):
        console.print(message)


def quiet_model_loading() -> None:
    """Silence transformers' per-load chatter (weight-loading bars, load reports): erbench's own bars say what runs."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
