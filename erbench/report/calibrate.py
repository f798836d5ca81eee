"""Measure how far the reference grid's metrics move when nothing but the arithmetic changes, and write the
check's tolerances (and its references) from that.

Each variant re-runs the whole grid in a child process (the CPU switches of erbench/cpu.py are read when a
process loads torch and numpy), with its own asset cache so that `prepare` also runs on the variant's code
path. Complete records are kept under OUT/<variant>/, so an interrupted calibration resumes.

- `pinned`: the references themselves (erbench's portable code path, the grid's thread count).
- code-path variants: one thread; this CPU's native paths (AVX-512 ATen and numpy, MKL's own dispatch);
  native paths limited to AVX2 (what an AVX2-only CPU, such as an AMD EPYC before Zen 4, picks by itself).
- seed variants: the next two seeds, pinned, for the scale of a real change.

The tolerance of a metric in a task is twice the largest deviation of any code-path variant from `pinned`,
over the task's runs and both splits (at least a round-off floor); the seed spread is written beside it."""

import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from erbench import cpu
from erbench.errors import ErbenchError
from erbench.report import check

NO_AVX512 = {"ATEN_CPU_CAPABILITY": "avx2", "NPY_DISABLE_CPU_FEATURES": cpu.PINNED["NPY_DISABLE_CPU_FEATURES"]}
# name: (environment, threads (None: the grid's), seed offset, what it stands for)
PORTABLE = {cpu.PORTABLE_ENV: "1"}
VARIANTS = {
    "pinned": (PORTABLE, None, 0, "the references: erbench's portable code path"),
    "threads-1": (PORTABLE, 1, 0, "one torch thread instead of the grid's"),
    "native": ({}, None, 0, "this CPU's native code paths"),
    "native-avx2": (NO_AVX512, None, 0, "native paths without AVX-512"),
    "seed+1": (PORTABLE, None, 1, "the next seed"),
    "seed+2": (PORTABLE, None, 2, "the seed after"),
}
CODE_PATH_VARIANTS = ("threads-1", "native", "native-avx2")
SAFETY = 2.0
FLOOR = 1e-6  # relative round-off floor: JSON keeps ~16 digits, a metric is exact when it is this close


def run_variants(reference_dir: Path, out: Path, data_dir: Path | None) -> None:
    grid = check.load_grid(reference_dir)
    for name, (env, threads, offset, _) in VARIANTS.items():
        # Seed variants share the pinned variant's assets: prepare does not depend on the seed.
        cache = out / "cache" / ("pinned" if name.startswith("seed") else name)
        child_env = {k: v for k, v in os.environ.items() if k not in cpu.PINNED and k != cpu.PORTABLE_ENV} | env
        args = [sys.executable, "-m", "erbench.report.calibrate", str(reference_dir), str(out / name), str(cache),
                str(threads or grid["threads"]), str(offset), str(data_dir or "")]
        print(f"calibration variant {name}: {VARIANTS[name][3]}", file=sys.stderr, flush=True)
        if subprocess.run(args, env=child_env).returncode != 0:
            raise ErbenchError(f"calibration variant {name} failed", f"see the output above; re-run to resume ({out})")


def tolerances(grid: dict, out: Path) -> dict[str, dict[str, dict]]:
    """{task: {metric: {abs, code_path_deviation, seed_sd, worst_variant}}} from the variants' records."""
    runs = {variant: check.grid_runs(grid, VARIANTS[variant][2]) for variant in VARIANTS}
    names = {variant: [name for name, _ in variant_runs] for variant, variant_runs in runs.items()}
    records = {variant: check.read_fresh(out / variant, variant_runs) for variant, variant_runs in runs.items()}
    table: dict[str, dict[str, dict]] = {}
    for index, (name, args) in enumerate(runs["pinned"]):
        reference = records["pinned"][name]
        seeds = [reference] + [records[v][names[v][index]] for v in ("seed+1", "seed+2")]
        for split in ("val", "test"):
            for metric, value in reference["final"][split].items():
                if not isinstance(value, (int, float)) or metric in ("iteration", "resets_so_far"):
                    continue
                row = table.setdefault(args["task"], {}).setdefault(
                    metric, {"code_path_deviation": 0.0, "worst_variant": "none", "seed_sds": [], "scale": 0.0})
                row["scale"] = max(row["scale"], abs(value))
                for variant in CODE_PATH_VARIANTS:
                    deviation = abs(records[variant][name]["final"][split][metric] - value)
                    if deviation > row["code_path_deviation"]:
                        row["code_path_deviation"], row["worst_variant"] = deviation, variant
                row["seed_sds"].append(statistics.stdev(r["final"][split][metric] for r in seeds))
    for metrics in table.values():
        for row in metrics.values():
            row["seed_sd"] = statistics.mean(row.pop("seed_sds"))
            row["abs"] = max(SAFETY * row["code_path_deviation"], FLOOR * row.pop("scale"))
    return table


def write_tolerances(reference_dir: Path, table: dict, command: str) -> Path:
    from erbench.results import cpu_model

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [
        f"# Written by `{command}` on {stamp}, {cpu_model()}; do not edit by hand.",
        f"# abs = {SAFETY:g} x the largest |variant - pinned| over this task's runs and both splits, for the",
        f"# code-path variants {', '.join(CODE_PATH_VARIANTS)} (erbench/report/calibrate.py),",
        f"# at least {FLOOR:g} x the metric's largest value; seed_sd is the mean standard deviation over seeds",
        "# 0-2 of each run: a tolerance far below it means the check resolves changes much smaller than a seed.",
    ]
    for task, metrics in table.items():
        lines.append(f"\n[{task}]")
        for metric, row in sorted(metrics.items()):
            note = "  # noisy: the code path moves it as much as a seed" if row["abs"] >= row["seed_sd"] > 0 else ""
            lines.append(f'{metric} = {{ abs = {row["abs"]:.6g}, code_path_deviation = {row["code_path_deviation"]:.6g}, '
                         f'worst_variant = "{row["worst_variant"]}", seed_sd = {row["seed_sd"]:.6g} }}{note}')
    path = reference_dir / "tolerance.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def calibrate(reference_dir: Path, out: Path, data_dir: Path | None) -> Path:
    """Run the variants, then make the pinned records the references and write the tolerances."""
    run_variants(reference_dir, out, data_dir)
    grid = check.load_grid(reference_dir)
    table = tolerances(grid, out)
    check.update(reference_dir, check.read_fresh(out / "pinned", check.grid_runs(grid)))
    return write_tolerances(reference_dir, table, f"erbench check --calibrate {out} --reference {reference_dir}")


def worker(reference_dir: str, out: str, cache: str, threads: str, seed_offset: str, data_dir: str) -> None:
    """One variant (a child process): the grid's runs, records kept under `out`."""
    grid = check.load_grid(Path(reference_dir))
    check.fresh_records(check.grid_runs(grid, int(seed_offset)), int(threads), Path(data_dir) if data_dir else None,
                        Path(cache), Path(out))


if __name__ == "__main__":
    try:
        worker(*sys.argv[1:])
    except ErbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
