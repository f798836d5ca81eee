"""The `erbench` command line. Heavy imports (torch, transformers) happen inside commands, so --help is instant."""

import math
import os
import sys
from pathlib import Path

import typer

from erbench.errors import ErbenchError

app = typer.Typer(help="Benchmark RL fine-tuning methods on the reward/drift trade-off (Elastic Reset, NeurIPS 2023).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

INCLUDE_HELP = ("a folder of recipe .toml files (tasks, methods) and the modules they name; repeatable; "
                "also $ERBENCH_PATH (colon-separated), which sweep workers inherit")
DATA_HELP = "folder with the offline data sets (imdb/aclImdb_v1.tar.gz, ...); default $ERBENCH_DATA, else download"
REPORT_TO_HELP = ("also log to a tracker: none | tensorboard | wandb (offline unless WANDB_MODE or WANDB_API_KEY is set) "
                  "| trackio (each needs erbench's extra of its name: pip install 'erbench\\[wandb]')")
CACHE_HELP = "where prepared assets are cached; default $ERBENCH_CACHE or ~/.cache/erbench"
PORTABLE_HELP = ("the CPU code path that gives the same numbers on every x86-64 CPU (also $ERBENCH_PORTABLE_CPU=1; "
                 "about half the update's speed; default: this CPU's native path)")


def fail(error: ErbenchError) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def code_path(portable: bool) -> None:
    """--portable: switch to the portable CPU path before anything loads torch (erbench/cpu.py)."""
    if portable:
        from erbench import cpu

        try:
            cpu.use_portable()
        except ErbenchError as e:
            fail(e)


def plugins(include_path: list[Path]) -> None:
    """Make --include-path folders part of the registry, here and in every process this one starts."""
    from erbench.registry import add_include_paths

    try:
        add_include_paths(include_path)
    except ErbenchError as e:
        fail(e)


def dirs(data_dir: Path | None, cache_dir: Path | None) -> tuple[Path | None, Path]:
    from erbench.runner import default_cache_dir, default_data_dir

    return data_dir or default_data_dir(), cache_dir or default_cache_dir()


@app.command("list")
def list_command(include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP)):
    """List tasks (with their scales and grids) and methods, as their recipes declare them."""
    plugins(include_path)
    try:
        from erbench.config import recipe_scales
        from erbench.registry import registry
        from erbench.sweep import describe_grids

        reg = registry()
        typer.echo("tasks:")
        for name, spec in reg.tasks.items():
            typer.echo(f"  {name:10s} {spec.description}")
            for scale, description in recipe_scales(name).items():
                typer.echo(f"    --scale {scale:6s} {description}")
        typer.echo("grids (erbench sweep TASK --grid NAME):")
        for name in reg.tasks:
            for grid, description in describe_grids(name).items():
                typer.echo(f"  {name} --grid {grid:12s} {description}")
        typer.echo("methods:")
        for name, spec in reg.methods.items():
            needs = f" (needs a task with: {', '.join(spec.requires)})" if spec.requires else ""
            typer.echo(f"  {name:14s} {spec.description}{needs}")
    except ErbenchError as e:
        fail(e)


@app.command()
def prepare(
    task: str = typer.Argument(..., help="task name (see `erbench list`)"),
    scale: str = typer.Option("tiny", help="tiny | small | paper"),
    set_: list[str] = typer.Option([], "--set", help="override a task setting, e.g. --set task.lm_train_tokens=500000"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
    force: bool = typer.Option(False, help="rebuild even when cached assets exist"),
    portable: bool = typer.Option(False, "--portable", help=PORTABLE_HELP),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Build a task's models and reward once (cached; `run` calls this itself)."""
    code_path(portable)
    plugins(include_path)
    try:
        from erbench.runner import prepare as prepare_task

        meta = prepare_task(task, scale, *dirs(data_dir, cache_dir), set_, force)
    except ErbenchError as e:
        fail(e)
    for key, value in meta.items():
        if key != "config":
            typer.echo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


@app.command()
def run(
    task: str = typer.Argument(..., help="task name (see `erbench list`)"),
    method: str = typer.Option(..., "--method", "-m", help="a method (see `erbench list`), e.g. ppo, elastic, ref-reset"),
    scale: str = typer.Option("tiny", help="tiny | small | paper"),
    seed: int = typer.Option(0, help="random seed"),
    set_: list[str] = typer.Option([], "--set", help="override any recipe field: section.key=value (sections: task, train, method)"),
    out: Path = typer.Option(Path("results/runs"), help="folder for the run record"),
    eval_ema: bool = typer.Option(False, "--eval-ema", help="also evaluate the EMA model at every evaluation"),
    algo: str = typer.Option("ppo", help="ppo (erbench's PPO) | rloo | grpo (TRL with the Elastic Reset callback; fixed KL beta)"),
    checkpoint_every: int = typer.Option(0, help="save the training state every k iterations, for --resume (0: never)"),
    resume: bool = typer.Option(False, "--resume", help="continue the interrupted run of these settings from its last checkpoint"),
    record_file: Path = typer.Option(None, "--record", help="write the record to this file instead of a new one under --out (sweeps use it)"),
    report_to: str = typer.Option("none", "--report-to", help=REPORT_TO_HELP),
    tracker_dir: Path = typer.Option(None, "--tracker-dir", help="where the tracker writes (default: --out/TRACKER, e.g. results/runs/tensorboard)"),
    allow_code_execution: bool = typer.Option(False, "--allow-code-execution", help="run generated code (HumanEval) in a sandboxed process"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
    portable: bool = typer.Option(False, "--portable", help=PORTABLE_HELP),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Train one policy with one method and write its run record."""
    code_path(portable)
    plugins(include_path)
    if allow_code_execution:
        os.environ["ERBENCH_ALLOW_CODE_EXECUTION"] = "1"  # read where the code would run; sweeps' runs inherit it
    try:
        from erbench.registry import registry
        from erbench.runner import resolve_run, run as run_task

        if checkpoint_every < 0:
            raise ErbenchError(f"--checkpoint-every {checkpoint_every} is negative", "give a number of iterations, or 0 for no checkpoints")
        if algo == "ppo":
            cfg = resolve_run(task, method, scale, seed, set_ + (["train.eval_ema=true"] if eval_ema else []))
            path, record = run_task(cfg, out, *dirs(data_dir, cache_dir), record_path=record_file, resume=resume,
                                    checkpoint_every=checkpoint_every, report_to=report_to, tracker_dir=tracker_dir)
        else:
            from erbench.integrations.trl_run import check_supported, run_trl

            if resume or checkpoint_every or eval_ema or report_to != "none":
                raise ErbenchError(f"--resume, --checkpoint-every, --eval-ema and --report-to are not available with --algo {algo}",
                                   "drop them, or use --algo ppo")
            cfg = resolve_run(task, method, scale, seed, ["train.kl_controller=fixed", *set_])  # TRL's beta is fixed
            check_supported(cfg, algo)
            path, record = run_trl(cfg, algo, out, *dirs(data_dir, cache_dir), record_path=record_file)
    except ErbenchError as e:
        fail(e)
    from erbench.results import summary_lines

    typer.echo("\n".join(summary_lines(record, path, registry().task(task).drift_metrics)))


@app.command("config")
def config_command(
    task: str = typer.Argument(..., help="task name (see `erbench list`)"),
    method: str = typer.Option(..., "--method", "-m", help="a method (see `erbench list`)"),
    scale: str = typer.Option("tiny", help="tiny | small | paper"),
    set_: list[str] = typer.Option([], "--set", help="override a setting, as with `erbench run`"),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Print the resolved configuration of a run, each value with the layer it came from."""
    plugins(include_path)
    try:
        import dataclasses

        from erbench.config import resolve, resolve_layers

        cfg = resolve(task, scale, method, 0, set_)  # validates every value
        _, origins, _ = resolve_layers(task, scale, method, set_)
    except ErbenchError as e:
        fail(e)
    for section, values in (("task", cfg.task_config), ("train", cfg.train), ("method", cfg.method_config)):
        for key, value in dataclasses.asdict(values).items():
            typer.echo(f"{section + '.' + key:30s} = {value!r:28s} # {origins[section].get(key, 'default')}")


@app.command()
def interpolate(
    record: Path = typer.Argument(..., help="a completed run's record (.json)"),
    alphas: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="comma-separated weights a in [0, 1]"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Evaluate (1 - a) * theta0 + a * theta for a run's final policy (and EMA); store the curve in its record."""
    plugins(include_path)
    try:
        from erbench.interpolate import interpolate as run_interpolation

        try:
            weights = [float(a) for a in alphas.split(",")]
        except ValueError:
            raise ErbenchError(f"invalid --alphas '{alphas}'", "give comma-separated numbers, e.g. 0,0.5,1") from None
        curves = run_interpolation(record, weights, *dirs(data_dir, cache_dir))
    except ErbenchError as e:
        fail(e)
    for name, points in curves.items():
        for point in points:
            typer.echo(f"{name:6s} alpha {point['alpha']:.2f}  reward {point['reward']:.4f}  perplexity {point['perplexity']:.2f}  kl_to_init {point['kl_to_init']:.4f}")
    typer.echo(f"stored in {record}")


@app.command()
def sweep(
    task: str = typer.Argument(..., help="task name (see `erbench list`)"),
    grid: str = typer.Option(..., help="a grid of the task's recipe (see `erbench list`), or a grid .toml file"),
    seeds: int = typer.Option(5, help="seeds 0..K-1 of every setting (the paper used 5)"),
    scale: str = typer.Option(None, help="tiny | small | paper (default: the grid's scale)"),
    set_: list[str] = typer.Option([], "--set", help="override a setting in every run, e.g. --set train.iterations=10"),
    jobs: int = typer.Option(None, help="local: runs at a time (default 1; several may share a GPU); ray: a cap on "
                             "runs in flight (default none: every run is submitted and the cluster's CPUs and GPUs "
                             "decide how many run together)"),
    launcher: str = typer.Option("local", help="local | ray"),
    address: str = typer.Option(None, help="ray: the cluster's HOST:PORT (default: a running local instance, else a new one)"),
    cpus_per_run: float = typer.Option(1.0, help="ray: CPUs each run asks for (a node of N CPUs runs N / C at once)"),
    gpus_per_run: float = typer.Option(0.0, help="ray: GPUs each run asks for (a fraction shares a GPU, e.g. 0.25)"),
    checkpoint_every: int = typer.Option(5, help="iterations between checkpoints, so a killed sweep resumes its runs (0: none)"),
    out: Path = typer.Option(None, help="folder for the records (default results/sweeps/TASK-GRID-SCALE)"),
    report_to: str = typer.Option("none", "--report-to", help=REPORT_TO_HELP + "; files under OUT/TRACKER, one run per seed"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
    portable: bool = typer.Option(False, "--portable", help=PORTABLE_HELP + "; every run of the sweep"),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Run a grid (methods x settings x seeds); runs with a complete record are skipped, so re-running resumes."""
    code_path(portable)
    plugins(include_path)
    try:
        from erbench.sweep import sweep as run_sweep

        if checkpoint_every < 0:
            raise ErbenchError(f"--checkpoint-every {checkpoint_every} is negative", "give a number of iterations, or 0")
        folder, summary, seconds, prepare_seconds = run_sweep(task, grid, seeds, scale, set_, out, jobs, launcher, address,
                                             *dirs(data_dir, cache_dir), checkpoint_every, cpus_per_run, gpus_per_run,
                                             report_to, echo=typer.echo)
    except ErbenchError as e:
        fail(e)
    typer.echo(f"done {len(summary['done'])}, skipped {len(summary['skipped'])}, failed {len(summary['failed'])} "
               f"in {seconds:.0f} s ({prepare_seconds:.0f} s preparing assets); records in {folder}")
    for name, error in summary["failed"]:
        typer.echo(f"failed {name}: {error}")
    if summary["failed"]:
        raise typer.Exit(1)


RESULTS_HELP = "folder searched (recursively) for run records; its reference/ subfolder is left out"
VERBOSE_HELP = "name each older run left out because a newer run of the same settings and seed replaces it"


def load_runs(results: Path, checkpoint: str, verbose: bool):
    """The runs table, curves and interpolation curves, and the records behind the runs (newest per seed)."""
    from erbench.report.records import curves_table, interpolation_table, newest_per_seed, read_records, runs_table

    if checkpoint not in ("final", "best"):
        raise ErbenchError(f"unknown checkpoint '{checkpoint}'", "use --checkpoint final or --checkpoint best")
    def warn(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    records = read_records(results, warn=warn)
    if not records:
        raise ErbenchError(f"no completed run records under {results}", "run `erbench run TASK --method M` first, or pass --results DIR")
    runs, superseded = newest_per_seed(records)
    # A re-run replacing an older record is expected (records are kept where they were made), so one line, not one each.
    if verbose:
        for older, newer in superseded:
            typer.echo(f"superseded: {older} by {newer}, a newer run of the same settings and seed", err=True)
    elif superseded:
        typer.echo(f"note: {len(superseded)} older runs superseded by newer ones of the same settings; --verbose lists them", err=True)
    # Interpolation curves come from every record: a re-run does not redo the older run's `erbench interpolate`.
    return runs_table(runs, checkpoint), curves_table(runs), interpolation_table(records), runs


@app.command()
def plot(
    pareto: bool = typer.Option(False, "--pareto", help="reward against drift per task and scale: the methods at their "
                                "recipe settings, and (ablations-*.png) every other setting swept"),
    curves: bool = typer.Option(False, "--curves", help="reward and drift against iteration, resets marked"),
    pass_k: bool = typer.Option(False, "--pass-at-k", help="pass@k against k per task and scale, a line per method "
                                "(tasks whose records hold pass@k: arith)"),
    task: str = typer.Option(None, help="only this task (default: every task found)"),
    x: str = typer.Option(None, help="drift metric on the x axis (default: the task's first drift metric)"),
    y: str = typer.Option("reward", help="reward metric on the y axis"),
    sqrt_x: bool = typer.Option(False, "--sqrt-x", help="the drift axis on a square-root scale (Gao et al. 2023: reward "
                                "against sqrt(KL))"),
    checkpoint: str = typer.Option("final", help="final | best (best-by-reward evaluation, as SIL reports)"),
    results: Path = typer.Option(Path("results"), help=RESULTS_HELP),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    out: Path = typer.Option(None, help="output file (.png, .svg or .pdf) when one figure is drawn; default "
                             "results/<kind>-<task>[-<scale>][-<x>][-sqrt].png"),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Draw reward/drift figures (--pareto), training curves (--curves) and pass@k against k (--pass-at-k) from stored run records."""
    plugins(include_path)
    try:
        from erbench.report import plots
        from erbench.report.tables import drift_metrics

        if not (pareto or curves or pass_k):
            raise ErbenchError("nothing to plot", "pass --pareto, --curves and/or --pass-at-k")
        if out is not None and out.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ErbenchError(f"cannot write a plot to {out}", "give --out a .png, .svg or .pdf file")
        runs, curve_rows, interpolations, _ = load_runs(results, checkpoint, verbose)
        tasks = [task] if task else sorted(runs["task"].unique())
        figures = []  # (kind, task, scale or None, drift)
        for name in tasks:
            if name not in set(runs["task"]):
                raise ErbenchError(f"no records of task '{name}' under {results}", f"tasks found: {', '.join(sorted(runs['task'].unique()))}")
            drift = x or next(iter(drift_metrics(name)), None)
            for metric in (drift, y):
                if metric is None or metric not in runs or runs.loc[runs["task"] == name, metric].isna().all():
                    raise ErbenchError(f"task {name} records have no metric '{metric}'",
                                       f"choose among: {', '.join(c for c in runs.columns if c in curve_rows.columns and c not in ('task', 'scale', 'method', 'setting', 'seed', 'path', 'default'))}")
            scales = sorted(runs.loc[runs["task"] == name, "scale"].unique())
            figures += [("pareto", name, scale, drift) for scale in scales] if pareto else []
            figures += [("curves", name, None, drift)] if curves else []
            if pass_k and not any(c.startswith("pass@") for c in runs.columns if runs.loc[runs["task"] == name, c].notna().any()):
                raise ErbenchError(f"task {name} records have no pass@k metrics", "draw --pass-at-k for a task that reports them (arith)")
            figures += [("pass-at-k", name, scale, drift) for scale in scales] if pass_k else []
        if out is not None and len(figures) > 1:
            raise ErbenchError(f"--out names one file but {len(figures)} figures are asked for",
                               "use --out with one of --pareto / --curves / --pass-at-k, one task (--task T) with records of one scale")
        for kind, name, scale, drift in figures:
            if kind == "curves":
                typer.echo(f"wrote {plots.training_curves(curve_rows, name, out or results / f'curves-{name}.png')}")
                continue
            if kind == "pass-at-k":
                figure = plots.pass_at_k(runs, name, scale, out or results / f"pass-at-k-{name}-{scale}.png")
                typer.echo(f"wrote {figure}" if figure else f"no runs of {name} at scale {scale} with pass@k")
                continue
            suffix = ("" if x is None else f"-{drift}") + ("-sqrt" if sqrt_x else "")
            target = out or results / f"pareto-{name}-{scale}{suffix}.png"
            figure = plots.pareto(runs, name, scale, drift, y, target, interpolations, sqrt_x)
            typer.echo(f"wrote {figure}" if figure else f"no runs of {name} at scale {scale} at the recipe's settings "
                       "for the Pareto plot (the ablations plot draws the others)")
            ablations = None if out else plots.ablations(runs, name, scale, drift, y, results / f"ablations-{name}-{scale}{suffix}.png", sqrt_x)
            if ablations is not None:
                typer.echo(f"wrote {ablations}")
    except ErbenchError as e:
        fail(e)


@app.command()
def report(
    format: str = typer.Option("md", "--format", help="md | csv | json"),
    published: bool = typer.Option(False, "--published", help="add the cited numbers of results/published.csv"),
    claims: bool = typer.Option(False, "--claims", help="judge the paper's claims (results/claims.toml): a bootstrap interval per claim"),
    checkpoint: str = typer.Option("final", help="final | best"),
    drift_budget: float = typer.Option(None, help="drift budget for reward@budget (default: the median drift)"),
    results: Path = typer.Option(Path("results"), help=RESULTS_HELP),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    claims_file: Path = typer.Option(Path("results/claims.toml"), help="the claims to judge and the drift levels of the reward@level columns"),
    published_file: Path = typer.Option(Path("results/published.csv"), help="the published numbers"),
    write: bool = typer.Option(False, "--write", help="write the committed report (markdown, --published --claims) to --report-file, "
                                                      "and the generated blocks between their markers in --readme (Findings, tour, speed) "
                                                      "and in the --docs pages (samples)"),
    verify: bool = typer.Option(False, "--verify", help="exit 1 when --report-file, the README's or the docs pages' generated blocks "
                                                        "differ from what the records give"),
    report_file: Path = typer.Option(Path("results/report.md"), help="the committed report (--write, --verify)"),
    readme: Path = typer.Option(Path("README.md"), help="the README holding the headline Findings, the tour and the speed table (--write, --verify)"),
    docs: Path = typer.Option(Path("docs"), help="the reference pages; observability.md holds the samples excerpt (--write, --verify)"),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Print mean ± s.e. over seeds per task, scale and method, reward at drift levels and budgets, front hypervolume, and with --claims each claim's verdict."""
    plugins(include_path)
    try:
        import pandas as pd

        from erbench.report import findings, speed, tables, tour
        from erbench.report.claims import evaluate, findings_markdown, headline_markdown, load_claims, verdict_line
        from erbench.report.samples import drift_examples

        if format not in ("md", "csv", "json"):
            raise ErbenchError(f"unknown format '{format}'", "use --format md, csv or json")
        if drift_budget is not None and not (math.isfinite(drift_budget) and drift_budget >= 0):
            raise ErbenchError(f"--drift-budget {drift_budget}", "give a finite drift >= 0, or leave it out for the median drift")
        if write and verify:
            raise ErbenchError("--write and --verify together", "pass one: --write regenerates, --verify compares")
        if (write or verify) and format != "md":
            raise ErbenchError(f"--write and --verify make the markdown report, not --format {format}", "drop --format")
        published, claims = published or write or verify, claims or write or verify
        runs, _, _, records = load_runs(results, checkpoint, verbose)
        claim_list, levels = load_claims(claims_file) if claims or claims_file.exists() else ([], {})
        runs = tables.with_level_rewards(runs, records, levels)
        table, notes = tables.summary(runs, drift_budget, levels)
        pub = tables.published_rows(published_file, set(runs["task"])) if published else pd.DataFrame()
        verdicts = [verdict for claim in claim_list for verdict in evaluate(claim, records, levels)] if claims else []
        if format == "md":
            text = tables.markdown(table, notes, pub)
        elif format == "csv":
            text = pd.concat([table, pub], ignore_index=True).to_csv(index=False).rstrip()
        else:
            text = pd.concat([table, pub], ignore_index=True).to_json(orient="records", indent=1)
        examples = drift_examples(records) if format == "md" else ""
        if examples:
            text += "\n\n### What drift looks like\n\nThe first val prompt of each task's evaluation; the initial policy, " \
                    "then each method's final policy (`erbench samples RECORD ...` shows every sampled prompt).\n\n" + examples
        if claims:  # markdown gets the Findings table, csv and json a line per verdict
            text += "\n\n### Claims\n\n" + (findings_markdown(verdicts) if format == "md" else "\n".join(verdict_line(v) for v in verdicts))
        if write or verify:
            readme_blocks = {"findings": headline_markdown(verdicts), **tour.blocks(records, text),
                             "speed": speed.block(results / "benchmarks")}
            samples_block = {"samples": examples or "No committed record has samples yet."}
            wanted = findings.documents(text, report_file, {readme: readme_blocks, docs / findings.SAMPLES_PAGE: samples_block})
            if write:
                findings.write(wanted)
                typer.echo(f"wrote {', '.join(map(str, wanted))}")
                return
            stale = findings.stale(wanted)
            if stale:
                refresh = " ".join(["erbench", *sys.argv[1:]]).replace("--verify", "--write")
                typer.echo(f"error: {', '.join(map(str, stale))} differ(s) from what the committed records give; "
                           f"refresh with `{refresh}` and commit", err=True)
                raise typer.Exit(1)
            typer.echo(f"{', '.join(map(str, wanted))} match the records")
            return
        typer.echo(text)
    except ErbenchError as e:
        fail(e)


@app.command()
def samples(
    records: list[Path] = typer.Argument(..., help="run records (.json) of one task; their samples files lie beside them"),
    iteration: int = typer.Option(None, "--iteration", help="the evaluation to show (default: each record's last)"),
    split: str = typer.Option("val", "--split", help="val (every evaluation, beside the initial policy) | test (the final one)"),
    n: int = typer.Option(None, "-n", help="show the first n prompts (default: every sampled prompt)"),
    format: str = typer.Option("table", "--format", help="table (a terminal) | md"),
):
    """The same held-out prompts' responses side by side: the initial policy, then each record's, with reward and KL."""
    try:
        from erbench.report import samples as drift

        if split not in ("val", "test"):
            raise ErbenchError(f"unknown split '{split}'", "use --split val or --split test")
        if format not in ("table", "md"):
            raise ErbenchError(f"unknown format '{format}'", "use --format table or --format md")
        if n is not None and n < 1:
            raise ErbenchError(f"-n {n} shows no prompt", "give n >= 1, or leave it out for every sampled prompt")
        blocks = drift.comparison(drift.load(records), split, iteration, n)
    except ErbenchError as e:
        fail(e)
    if format == "md":
        typer.echo(drift.markdown(blocks))
    else:
        from rich.console import Console

        drift.print_tables(blocks, Console())


@app.command()
def check(
    reference: Path = typer.Option(Path("results/reference"), help="folder with grid.toml, tolerance.toml and the reference records"),
    fresh: Path = typer.Option(None, help="compare these records (named like the references) instead of re-running"),
    run_: list[str] = typer.Option([], "--run", help="check only this run of the grid (repeatable), e.g. imdb-tiny-elastic-seed0"),
    set_: list[str] = typer.Option([], "--set", help="override a setting in every run: a deliberate perturbation the check must catch"),
    keep: Path = typer.Option(None, help="keep the fresh records here (a check run again skips the complete ones)"),
    update: bool = typer.Option(False, "--update", help="re-run the grid and overwrite the reference records"),
    calibrate: Path = typer.Option(None, help="measure the tolerances: run the grid under forced CPU code paths, "
                                              "thread counts and seeds (records kept here, resumable), then rewrite "
                                              "the references and tolerance.toml"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
    include_path: list[Path] = typer.Option([], "--include-path", help=INCLUDE_HELP),
):
    """Re-run the reference grid and fail (exit 1) when a metric moves beyond its tolerance. Runs use the portable CPU
    code path (the references' own), whatever the environment says."""
    plugins(include_path)
    import tempfile

    try:
        from erbench.report import check as regression

        grid = regression.load_grid(reference)
        if not fresh:
            from erbench import cpu

            cpu.use_portable()  # the references' path: their last digits hold on any x86-64 CPU
        if calibrate:
            from erbench.report.calibrate import calibrate as measure

            typer.echo(f"wrote the references and {measure(reference, calibrate, dirs(data_dir, cache_dir)[0])}")
            return
        runs = regression.select(regression.grid_runs(grid, sets=tuple(set_)), run_)
        tolerances = regression.load_tolerances(reference)
        with tempfile.TemporaryDirectory() as tmp:
            if fresh:
                records = regression.read_fresh(fresh, runs)
            else:
                records = regression.fresh_records(runs, grid["threads"], *dirs(data_dir, cache_dir), keep or Path(tmp))
            if update:
                regression.update(reference, records)
                typer.echo(f"updated {len(records)} reference records in {reference}")
                return
            references = {name: regression.read(reference / f"{name}.json") for name, _ in runs}
            rows = [row for name, args in runs
                    for row in regression.compare(name, references[name], records[name], tolerances.get(args["task"], {}))]
    except ErbenchError as e:
        fail(e)
    typer.echo(f"{'run':38s} {'split':5s} {'metric':20s} {'reference':>12s} {'fresh':>12s} {'|diff|':>10s} {'tolerance':>10s}")
    for row in rows:
        typer.echo(f"{row.run:38s} {row.split:5s} {row.metric:20s} {row.reference:12.6g} {row.fresh:12.6g} "
                   f"{abs(row.fresh - row.reference):10.3g} {row.tolerance:10.3g}{'' if row.ok else '  REGRESSION'}")
    failed = [row for row in rows if not row.ok]
    typer.echo(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (timeout, SLURM preemption, Ray cancellation) stops a run as Ctrl-C does


def main():
    import signal

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
