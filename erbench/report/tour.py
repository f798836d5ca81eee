"""The README's 30-second tour: what `erbench run`, `erbench report` and `erbench samples` print, taken from the
committed records by the same code the commands run, so `erbench report --verify` keeps the tour true."""

from pathlib import Path

from erbench.report import samples
from erbench.report.records import at_recipe_default
from erbench.report.tables import drift_metrics
from erbench.results import summary_lines

RUN = ("imdb", "tiny", "elastic", 0)  # task, scale, method, seed of the run whose end the tour shows
REPORT = ("translation", "tiny", 5)  # the report section shown, and how many of its columns
SAMPLES = ("imdb", "tiny", 2, ("elastic", "ppo-nokl"), 2)  # task, scale, seed, the methods, the prompts shown


def console(command: str, output: str) -> str:
    return f"```console\n$ {command}\n{output}\n```"


def find(records: list[dict], task: str, scale: str, method: str, seed: int) -> dict | None:
    """The run of these at the method's recipe settings."""
    return next((r for r in records if (r["task"], r["scale"], r["method"], r["seed"]) == (task, scale, method, seed)
                 and at_recipe_default(r)), None)


def run_block(records: list[dict]) -> str:
    task, scale, method, seed = RUN
    record = find(records, task, scale, method, seed)
    command = f"erbench run {task} --method {method}" + ("" if scale == "tiny" else f" --scale {scale}")
    if record is None:
        return console(command, f"(no committed record of {task} {method} {scale} seed {seed})")
    lines = summary_lines(record, Path(record["path"]), drift_metrics(task))
    return console(command, "... (what it runs, then a progress bar per phase)\n" + "\n".join(lines))


def report_block(report: str) -> str:
    """The report's table of one task and scale, its first columns, without the cited published rows."""
    task, scale, columns = REPORT
    heading = f"### {task}, scale `{scale}`"
    if heading not in report:
        return console("erbench report", f"(no committed records of {task} at scale {scale})")
    section = report.split(heading, 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and "[published" not in line]
    cut = ["|".join(row.split("|")[:columns + 1]) + "| …" for row in rows]
    return console("erbench report", f"{heading}\n...\n" + "\n".join(cut) + "\n...")


def samples_block(records: list[dict]) -> str:
    task, scale, seed, methods, n = SAMPLES
    chosen = [find(records, task, scale, method, seed) for method in methods]
    if any(r is None or "samples_file" not in r for r in chosen):
        return f"(no committed {task} {scale} records of {', '.join(methods)} at seed {seed} with samples)"
    command = f"erbench samples {' '.join(r['path'] for r in chosen)} -n {n} --format md"
    return f"```console\n$ {command}\n```\n\n" + samples.markdown(samples.comparison(chosen, n=n))


def blocks(records: list[dict], report: str) -> dict[str, str]:
    """The tour's generated blocks by marker name."""
    return {"tour-run": run_block(records), "tour-report": report_block(report), "tour-samples": samples_block(records)}
