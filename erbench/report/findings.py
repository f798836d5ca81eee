"""The committed report: results/report.md and the README's generated blocks (the Findings table, the samples
excerpt), generated from the run records and compared with what is committed (`erbench report --verify`, run by CI)."""

from pathlib import Path

from erbench.errors import ErbenchError
from erbench.results import atomic_write

MARKERS = {"findings": ("<!-- findings:begin -->", "<!-- findings:end -->"),
           "samples": ("<!-- samples:start -->", "<!-- samples:end -->")}


def splice(readme: str, block: str, text: str, path: Path) -> str:
    """`readme` with the text between the block's markers replaced by `text`."""
    begin, end_marker = MARKERS[block]
    start, end = readme.find(begin), readme.find(end_marker)
    if start < 0 or end < start:
        raise ErbenchError(f"{path} has no {begin} ... {end_marker} markers",
                           f"add the two lines where the {block} block goes (begin before end)")
    return readme[:start + len(begin)] + "\n" + text + "\n" + readme[end:]


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ErbenchError(f"cannot read {path}: {e}", "run from the repository root or pass its path") from None


def documents(report: str, blocks: dict[str, str], report_file: Path, readme: Path) -> dict[Path, str]:
    """What the two committed files should hold; `blocks` are the README's generated blocks by name."""
    text = read(readme)
    for block, content in blocks.items():
        text = splice(text, block, content, readme)
    return {report_file: report + "\n", readme: text}


def write(wanted: dict[Path, str]) -> None:
    for path, text in wanted.items():  # each file atomically; both are computed before either is written
        atomic_write(path, text)


def stale(wanted: dict[Path, str]) -> list[Path]:
    return [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
