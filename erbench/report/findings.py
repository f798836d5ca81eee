"""The committed report (results/report.md) and the generated blocks of the README (the headline Findings, the
tour, the speed table) and of docs/ pages (the samples excerpt), made from the run records and compared with what is committed
(`erbench report --verify`, run by CI)."""

from pathlib import Path

from erbench.errors import ErbenchError
from erbench.results import atomic_write

BLOCKS = ("findings", "tour-run", "tour-report", "tour-samples", "speed", "samples")
MARKERS = {block: (f"<!-- {block}:begin -->", f"<!-- {block}:end -->") for block in BLOCKS}
SAMPLES_PAGE = "observability.md"  # the docs/ page holding the samples excerpt


def splice(page: str, block: str, text: str, path: Path) -> str:
    """`page` with the text between the block's markers replaced by `text`."""
    begin, end_marker = MARKERS[block]
    start, end = page.find(begin), page.find(end_marker)
    if start < 0 or end < start:
        raise ErbenchError(f"{path} has no {begin} ... {end_marker} markers",
                           f"add the two lines where the {block} block goes (begin before end)")
    return page[:start + len(begin)] + "\n" + text + "\n" + page[end:]


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ErbenchError(f"cannot read {path}: {e}", "run from the repository root or pass its path") from None


def documents(report: str, report_file: Path, pages: dict[Path, dict[str, str]]) -> dict[Path, str]:
    """What the committed files should hold: the report, and each page with its generated blocks (by name) spliced in."""
    wanted = {report_file: report + "\n"}
    for path, blocks in pages.items():
        text = read(path)
        for block, content in blocks.items():
            text = splice(text, block, content, path)
        wanted[path] = text
    return wanted


def write(wanted: dict[Path, str]) -> None:
    for path, text in wanted.items():  # each file atomically; all are computed before any is written
        atomic_write(path, text)


def stale(wanted: dict[Path, str]) -> list[Path]:
    return [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
