"""The `erbench` command line. Heavy imports (torch, transformers) happen inside commands, so --help is instant."""

import sys
from pathlib import Path

import typer

from erbench.errors import ErbenchError

app = typer.Typer(help="Benchmark RL fine-tuning methods on the reward/drift trade-off (Elastic Reset, NeurIPS 2023).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

DATA_HELP = "folder with the offline data sets (imdb/aclImdb_v1.tar.gz, ...); default $ERBENCH_DATA, else download"
CACHE_HELP = "where prepared assets are cached; default $ERBENCH_CACHE or ~/.cache/erbench"


def fail(error: ErbenchError) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def dirs(data_dir: Path | None, cache_dir: Path | None) -> tuple[Path | None, Path]:
    from erbench.runner import default_cache_dir, default_data_dir

    return data_dir or default_data_dir(), cache_dir or default_cache_dir()


@app.command("list")
def list_command():
    """List tasks (with their scales) and methods."""
    from erbench.config import recipe_scales
    from erbench.registry import METHODS, TASKS

    typer.echo("tasks:")
    for name, spec in TASKS.items():
        typer.echo(f"  {name:10s} {spec.description}")
        for scale, description in recipe_scales(name).items():
            typer.echo(f"    --scale {scale:6s} {description}")
    typer.echo("methods:")
    for name, spec in METHODS.items():
        typer.echo(f"  {name:10s} {spec.description}")


@app.command()
def prepare(
    task: str = typer.Argument(..., help="task name (see `erbench list`)"),
    scale: str = typer.Option("tiny", help="tiny | small | paper"),
    set_: list[str] = typer.Option([], "--set", help="override a task setting, e.g. --set task.lm_train_tokens=500000"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
    force: bool = typer.Option(False, help="rebuild even when cached assets exist"),
):
    """Build a task's models and reward once (cached; `run` calls this itself)."""
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
    method: str = typer.Option(..., "--method", "-m", help="ppo | ppo-nokl | reset | reset-ema | ema-ref | elastic"),
    scale: str = typer.Option("tiny", help="tiny | small | paper"),
    seed: int = typer.Option(0, help="random seed"),
    set_: list[str] = typer.Option([], "--set", help="override any recipe field: section.key=value (sections: task, train, method)"),
    out: Path = typer.Option(Path("results/runs"), help="folder for the run record"),
    data_dir: Path = typer.Option(None, help=DATA_HELP),
    cache_dir: Path = typer.Option(None, help=CACHE_HELP),
):
    """Train one policy with one method and write its run record."""
    try:
        from erbench.runner import FINAL_KEYS, resolve_run, run as run_task

        cfg = resolve_run(task, method, scale, seed, set_)
        path, record = run_task(cfg, out, *dirs(data_dir, cache_dir))
    except ErbenchError as e:
        fail(e)
    for split in ("val", "test"):
        metrics = record["final"][split]
        typer.echo(f"{split:4s} " + "  ".join(f"{k} {metrics[k]:.4f}" for k in FINAL_KEYS))
    typer.echo(f"resets after iterations: {record['resets'] or 'none'}")
    typer.echo(f"record: {path}")


def main():
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
