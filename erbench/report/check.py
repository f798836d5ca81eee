"""CI regression: re-run the reference grid (results/reference/grid.toml) and compare with its records.

The tolerances (results/reference/tolerance.toml) are measured, not chosen: `erbench check --calibrate`
(erbench/report/calibrate.py) re-runs the grid under forced CPU code paths, thread counts and seeds and
writes twice the largest code-path deviation per task and metric."""

import tomllib
from dataclasses import dataclass
from pathlib import Path

from erbench.errors import ErbenchError
from erbench.results import atomic_write_json, read_record


@dataclass
class Comparison:
    run: str
    split: str
    metric: str
    reference: float
    fresh: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return abs(self.fresh - self.reference) <= self.tolerance


def read_toml(path: Path, fix: str) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ErbenchError(f"cannot read {path}: {e}", fix) from None


def load_grid(reference_dir: Path) -> dict:
    grid = read_toml(reference_dir / "grid.toml", "restore results/reference/grid.toml")
    if not isinstance(grid.get("threads"), int) or grid["threads"] < 1:
        raise ErbenchError(f"{reference_dir / 'grid.toml'} names no torch thread count ('threads = N')",
                           "add the thread count the references were made with, e.g. threads = 2")
    return grid


def load_tolerances(reference_dir: Path) -> dict[str, dict]:
    """{task: {metric: {"abs": ..., ...}}}."""
    return read_toml(reference_dir / "tolerance.toml",
                     f"measure them with `erbench check --calibrate DIR --reference {reference_dir}`")


def grid_runs(grid: dict, seed_offset: int = 0, sets: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """(record name, run arguments) for every task x method x seed of the grid; `sets` are applied to every run."""
    return [(f"{g['task']}-{g['scale']}-{method}-seed{seed + seed_offset}",
             {"task": g["task"], "scale": g["scale"], "method": method, "seed": seed + seed_offset,
              "sets": [*g.get("set", []), *sets]})
            for g in grid["grid"] for method in g["methods"] for seed in g["seeds"]]


def select(runs: list[tuple[str, dict]], only: list[str]) -> list[tuple[str, dict]]:
    unknown = sorted(set(only) - {name for name, _ in runs})
    if unknown:
        raise ErbenchError(f"no run {unknown[0]} in the reference grid", f"choose from: {', '.join(n for n, _ in runs)}")
    return [(name, args) for name, args in runs if not only or name in only]


def read(path: Path) -> dict:
    if not path.exists():
        raise ErbenchError(f"no record {path}", "create the references with `erbench check --update`")
    return read_record(path, "restore it from git or re-create it with `erbench check --update`")


def compare(name: str, reference: dict, fresh: dict, tolerances: dict) -> list[Comparison]:
    rows = []
    for split in ("val", "test"):
        for metric, tol in tolerances.items():
            ref_value = reference["final"][split].get(metric)
            if ref_value is None:
                continue
            fresh_value = fresh["final"].get(split, {}).get(metric, float("nan"))
            rows.append(Comparison(name, split, metric, ref_value, fresh_value, tol["abs"]))
    return rows


def fresh_records(runs: list[tuple[str, dict]], threads: int, data_dir: Path | None, cache_dir: Path,
                  out: Path) -> dict[str, dict]:
    """Run the configurations now with `threads` torch threads, keeping each record as out/NAME.json;
    a record already complete there is read instead (an interrupted check or calibration resumes)."""
    import torch

    from erbench.runner import resolve_run, run

    torch.set_num_threads(threads)  # reductions split by thread count: the references' count, on any machine
    records = {}
    for name, args in runs:
        path = out / f"{name}.json"
        try:
            records[name] = read_record(path, "")
            continue
        except ErbenchError:
            pass
        cfg = resolve_run(args["task"], args["method"], args["scale"], args["seed"], args["sets"])
        _, records[name] = run(cfg, out, data_dir, cache_dir, record_path=path)
    return records


def update(reference_dir: Path, records: dict[str, dict]) -> None:
    for name, record in records.items():
        atomic_write_json(reference_dir / f"{name}.json", record)


def read_fresh(fresh_dir: Path, runs: list[tuple[str, dict]]) -> dict[str, dict]:
    """Fresh records given by the user (`--fresh DIR`), named like the references."""
    return {name: read(fresh_dir / f"{name}.json") for name, _ in runs}
