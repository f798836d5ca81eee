"""The committed report: results/report.md and the README's Findings table, generated from the run records and
compared with what is committed (`erbench report --verify`, run by CI)."""

from pathlib import Path

from erbench.errors import ErbenchError
from erbench.results import atomic_write_text

BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"


def splice(readme: str, findings: str, path: Path) -> str:
    """`readme` with the text between the findings markers replaced by `findings`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ErbenchError(f"{path} has no {BEGIN} ... {END} markers",
                           "add the two lines where the Findings table goes (begin before end)")
    return readme[:start + len(BEGIN)] + "\n" + findings + "\n" + readme[end:]


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ErbenchError(f"cannot read {path}: {e}", "run from the repository root or pass its path") from None


def documents(report: str, findings: str, report_file: Path, readme: Path) -> dict[Path, str]:
    """What the two committed files should hold."""
    return {report_file: report + "\n", readme: splice(read(readme), findings, readme)}


def write(wanted: dict[Path, str]) -> None:
    for path, text in wanted.items():  # each file atomically; both are computed before either is written
        atomic_write_text(path, text)


def stale(wanted: dict[Path, str]) -> list[Path]:
    return [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
