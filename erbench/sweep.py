"""Sweeps: a grid of runs (methods x settings x seeds) declared in a task's recipe, run by a launcher.

A grid lives under `[grids.NAME]` of `tasks/<task>.toml` (or in a TOML file given by path) as `methods` x
`settings`, or as a list of such `[[grids.NAME.cells]]`. Every run gets a fixed record file named after its
method, setting and seed, so a sweep run again skips the runs whose record is complete, resumes those with a
checkpoint and re-runs the rest. A run that fails is recorded with its error; the others go on.
"""

import hashlib
import json
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from erbench.errors import ErbenchError
from erbench.launchers import Outcome
from erbench.results import RECORD_SCHEMA, atomic_write, atomic_write_json, check_writable, samples_path
from erbench.trackers import check_tracker


@dataclass(frozen=True)
class Job:
    """One run of a sweep, as arguments of `erbench run`."""

    name: str  # the record's file stem
    task: str
    method: str
    scale: str
    seed: int
    sets: tuple[str, ...]

    def run_args(self) -> list[str]:
        return ["run", self.task, "--method", self.method, "--scale", self.scale, "--seed", str(self.seed),
                *[arg for item in self.sets for arg in ("--set", item)]]


def load_grid(task: str, name: str) -> dict:
    """The grid `name` of the task's recipe, or the grid in the TOML file `name` (a [grids.X] table or a bare grid)."""
    from erbench.registry import registry

    if name.endswith(".toml"):
        try:
            data = tomllib.loads(Path(name).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ErbenchError(f"cannot read grid file {name}: {e}", "give a TOML file with methods = [...] and settings = [...]") from None
        grids = data.get("grids", {})
        grid = data if "methods" in data or "cells" in data else (next(iter(grids.values())) if len(grids) == 1 else None)
        if grid is None:
            raise ErbenchError(f"{name} declares no single grid", "write methods = [...] (and settings = [...]) at its top level")
        return grid
    spec = registry().task(task)
    grids = spec.recipe["grids"]
    if name not in grids:
        raise ErbenchError(f"unknown grid '{name}' for task {task}", f"choose one of: {', '.join(grids) or 'none declared'} "
                           f"(grids are declared in {spec.source}), or give a grid .toml file")
    return grids[name]


def describe_grids(task: str) -> dict[str, str]:
    from erbench.registry import registry

    return {name: grid.get("description", "") for name, grid in registry().task(task).recipe["grids"].items()}


def setting_sets(setting: dict) -> list[str]:
    def text(value) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [f"{key}={text(value)}" for key, value in setting.items()]


def label(setting: dict, extra: list[str]) -> str:
    """A readable, file-name-safe name for a setting; the sweep's own --set overrides add a short hash."""
    parts = [f"{key.split('.')[-1]}{value}" for key, value in setting.items()] or ["default"]
    if extra:
        parts.append("x" + hashlib.sha256("\n".join(extra).encode()).hexdigest()[:6])
    return re.sub(r"[^A-Za-z0-9._-]", "", "-".join(parts).replace("_", ""))


def expand(task: str, grid: dict, scale: str | None, seeds: int, extra: list[str]) -> list[Job]:
    """The grid's runs, every configuration validated (and duplicates dropped) before any work starts."""
    from erbench.runner import resolve_run

    if seeds < 1:
        raise ErbenchError(f"--seeds {seeds}", "give at least 1 seed")
    scale = scale or grid.get("scale") or "tiny"
    cells = grid.get("cells") or [grid]
    jobs, seen = [], set()
    for cell in cells:
        methods, settings = cell.get("methods"), cell.get("settings", [{}])
        if not isinstance(methods, list) or not methods or not isinstance(settings, list):
            raise ErbenchError("a grid cell without a list of methods", "declare methods = [...] and optionally settings = [{...}, ...]")
        cell_seeds = cell.get("seeds", seeds)
        if not isinstance(cell_seeds, int) or isinstance(cell_seeds, bool) or cell_seeds < 1:
            raise ErbenchError(f"a grid cell's seeds = {cell_seeds!r}", "give a whole number of at least 1 (it caps --seeds)")
        for method in methods:
            for setting in settings:
                for seed in range(min(seeds, cell_seeds)):
                    sets = tuple(setting_sets(setting) + list(extra))
                    cfg = resolve_run(task, method, scale, seed, list(sets))  # raises on any bad value
                    key = json.dumps(cfg.to_dict(), sort_keys=True)
                    if key in seen:
                        continue
                    seen.add(key)
                    jobs.append(Job(f"{task}-{method}-{scale}-{label(setting, extra)}-seed{seed}", task, method, scale, seed, sets))
    # Seed-major: a sweep stopped part-way (and resumed in a later sitting) has every setting at the same seeds.
    return sorted(jobs, key=lambda job: job.seed)


def record_status(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record.get("status") if isinstance(record, dict) and record.get("schema") == RECORD_SCHEMA else None


def record_failure(path: Path, job: Job, error: str) -> None:
    """Mark the run failed in its record (keeping what it wrote, so a checkpoint can still resume it),
    or write a record of the failure when the run died before writing one."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError):
        record = {"schema": RECORD_SCHEMA, "task": job.task, "scale": job.scale, "method": job.method, "seed": job.seed,
                  "sets": list(job.sets)}
    if record.get("status") == "failed" and record.get("error"):
        return  # the run recorded its own error
    record.update(status="failed", error=error)
    atomic_write_json(path, record)


def prepare_seconds(path: Path) -> float:
    """How long the run recorded at `path` spent preparing its assets (building them, or waiting for another's build)."""
    try:
        return float(json.loads(path.read_text())["timings"]["prepare_seconds"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return 0.0


def prepare_assets(jobs: list[Job], data_dir: Path | None, cache_dir: Path, echo) -> None:
    """Build each task configuration's cached assets once, before J runs would race to build them at once.
    A configuration that cannot be prepared is left to its runs, which then fail with the reason on record."""
    from erbench.runner import make_task, resolve_run

    seen = set()
    for job in jobs:
        cfg = resolve_run(job.task, job.method, job.scale, job.seed, list(job.sets))
        key = json.dumps([job.task, cfg.to_dict()["task_config"]], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            make_task(cfg, data_dir, cache_dir).prepare()
        except ErbenchError as e:
            echo(f"warning: cannot prepare the assets of {job.name}: {e}")


def sweep(task: str, grid_name: str, seeds: int, scale: str | None, extra: list[str], out: Path | None,
          jobs: int | None, launcher: str, address: str | None, data_dir: Path | None, cache_dir: Path,
          checkpoint_every: int, cpus_per_run: float, gpus_per_run: float, report_to: str = "none",
          echo=print) -> tuple[Path, dict[str, list], float, float]:
    """Run every missing run of the grid; returns the records' folder, {done, skipped, failed} lists of run names
    (failed: (name, error) pairs), the seconds it took and the seconds of them spent preparing assets. `jobs`: the
    local launcher's runs at a time (default 1), a cap on the Ray launcher's runs in flight (default none)."""
    from erbench import launchers
    from erbench.progress import progress_bar

    if jobs is not None and jobs < 1:
        raise ErbenchError(f"--jobs {jobs}", "give at least 1 job")
    if launcher not in ("local", "ray"):
        raise ErbenchError(f"unknown launcher '{launcher}'", "use --launcher local or --launcher ray")
    check_tracker(report_to)
    if address and launcher != "ray":
        raise ErbenchError("--address is for the Ray launcher", "add --launcher ray, or drop --address")
    if launcher == "ray":  # before anything is written
        launchers.require_ray()
        launchers.check_address(address)
    grid = load_grid(task, grid_name)
    all_jobs = expand(task, grid, scale, seeds, extra)
    out = out or Path("results") / "sweeps" / f"{task}-{Path(grid_name).stem}-{all_jobs[0].scale}"
    summary: dict[str, list] = {"done": [], "skipped": [], "failed": []}
    todo = []
    for job in all_jobs:
        if record_status(out / f"{job.name}.json") == "completed":
            summary["skipped"].append(job.name)
        else:
            todo.append(job)
    echo(f"sweep {task} grid {grid_name}: {len(all_jobs)} runs, {len(summary['skipped'])} already complete, "
         f"{len(todo)} to run with the {launcher} launcher -> {out}")
    check_writable(out)
    started = time.perf_counter()
    if launcher == "local":
        prepare_assets(todo, data_dir, cache_dir, echo)
    prepared = time.perf_counter() - started  # then the runs' own: on Ray, the first builds, the others wait for it
    runs_prepared = [0.0]
    data = data_dir.resolve() if data_dir else None
    settings = launchers.Settings(out.resolve(), data, cache_dir.resolve(), checkpoint_every, cpus_per_run, gpus_per_run,
                                  report_to)
    run_jobs = launchers.local if launcher == "local" else launchers.ray
    with progress_bar(f"sweep {task} {grid_name}", len(all_jobs)) as advance:
        advance(len(summary["skipped"]))

        def finished(job: Job, outcome: Outcome) -> None:
            path = out / f"{job.name}.json"
            if outcome.samples is not None:  # first: a record never names samples that are not on disk
                atomic_write(samples_path(path), outcome.samples)
            if outcome.record is not None:
                atomic_write_json(path, outcome.record)
            if outcome.log is not None:
                path.with_suffix(".log").write_text(outcome.log)
            runs_prepared.append(prepare_seconds(path))
            if outcome.status == "failed":
                record_failure(path, job, outcome.error or "failed")
                summary["failed"].append((job.name, outcome.error))
            else:
                summary["done"].append(job.name)
            advance(info=f"done {len(summary['done'])} failed {len(summary['failed'])}")

        run_jobs(todo, jobs if launcher == "ray" else jobs or 1, settings, finished, address=address)
    return out, summary, time.perf_counter() - started, prepared + max(runs_prepared)
