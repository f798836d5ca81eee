"""CI regression: re-run the reference grid (results/reference/grid.toml) and compare with its records."""

import tempfile
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


def load_grid(reference_dir: Path) -> dict:
    path = reference_dir / "grid.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ErbenchError(f"cannot read the reference grid {path}: {e}", "restore results/reference/grid.toml") from None


def grid_runs(grid: dict) -> list[tuple[str, dict]]:
    """(record name, run arguments) for every task x method x seed of the grid."""
    return [(f"{g['task']}-{g['scale']}-{method}-seed{seed}",
             {"task": g["task"], "scale": g["scale"], "method": method, "seed": seed, "sets": list(g.get("set", []))})
            for g in grid["grid"] for method in g["methods"] for seed in g["seeds"]]


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
            rows.append(Comparison(name, split, metric, ref_value, fresh_value, tol["abs"] + tol["rel"] * abs(ref_value)))
    return rows


def fresh_records(grid: dict, data_dir: Path | None, cache_dir: Path) -> dict[str, dict]:
    """Run every grid configuration now."""
    from erbench.runner import resolve_run, run

    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in grid_runs(grid):
            cfg = resolve_run(args["task"], args["method"], args["scale"], args["seed"], args["sets"])
            _, records[name] = run(cfg, Path(tmp) / name, data_dir, cache_dir)
    return records


def update(reference_dir: Path, records: dict[str, dict]) -> None:
    for name, record in records.items():
        atomic_write_json(reference_dir / f"{name}.json", record)


def read_fresh(fresh_dir: Path, grid: dict) -> dict[str, dict]:
    """Fresh records given by the user (`--fresh DIR`), named like the references."""
    return {name: read(fresh_dir / f"{name}.json") for name, _ in grid_runs(grid)}

