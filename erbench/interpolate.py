"""Weight interpolation (WiSE-FT / rewarded soups): evaluate theta(a) = (1 - a) * theta0 + a * theta for a
finished run's final policy (and its EMA) and store the points in the run record."""

import dataclasses
from pathlib import Path

import torch

from erbench.config import RunConfig, TrainConfig, build
from erbench.errors import ErbenchError
from erbench.methods.base import frozen_copy
from erbench.progress import progress_bar
from erbench.registry import load_method_config, load_task_class
from erbench.results import atomic_write_json, read_record


def read_run(path: Path) -> dict:
    record = read_record(path, "pass a completed run's .json record as `erbench run` wrote it")
    if not record.get("checkpoint"):
        raise ErbenchError(f"{path} has no saved weights (it predates them)", "re-run that configuration, then interpolate")
    return record


def config_of(record: dict) -> RunConfig:
    """The run's resolved configuration, re-validated (fields added since the run take their defaults)."""
    task_class, method_class = load_task_class(record["task"]), load_method_config(record["method"])
    # Records from before each method owned its config carry every method's knobs: keep the method's own.
    own = {f.name for f in dataclasses.fields(method_class)}
    method_values = {k: v for k, v in record["method_config"].items() if k in own}
    return RunConfig(record["task"], record["scale"], record["method"], record["seed"],
                     build(task_class.config_class, record["task_config"], "task"),
                     build(TrainConfig, record["train"], "train"), build(method_class, method_values, "method"))


@torch.no_grad()
def interpolate(record_path: Path, alphas: list[float], data_dir: Path | None, cache_dir: Path) -> dict:
    from safetensors.torch import load_model

    from erbench.runner import make_task

    if not alphas or any(not 0 <= a <= 1 for a in alphas):
        raise ErbenchError(f"invalid --alphas {alphas}", "give comma-separated weights in [0, 1], e.g. 0,0.25,0.5,0.75,1")
    record = read_run(record_path)
    cfg = config_of(record)
    task = make_task(cfg, data_dir, cache_dir)
    task.prepare()
    model = task.load_policy().eval()
    init_model = frozen_copy(model)
    folder = Path(record["checkpoint"])
    endpoints = {name: folder / f"{name}.safetensors" for name in ("policy", "ema") if (folder / f"{name}.safetensors").exists()}
    if "policy" not in endpoints:
        raise ErbenchError(f"the run's weights are missing from {folder}", "re-run the run (its checkpoint was deleted)")
    theta0 = [p.detach().clone() for p in model.parameters()]
    curves = {}
    with progress_bar("interpolating", len(endpoints) * len(alphas)) as advance:
        for name, weights in endpoints.items():
            load_model(model, str(weights), device=str(task.device))
            theta = [p.detach().clone() for p in model.parameters()]
            curves[name] = []
            for alpha in alphas:
                # (1 - a) * theta0 + a * theta, written so that a = 0 and a = 1 give theta0 and theta exactly.
                for p, start, end in zip(model.parameters(), theta0, theta):
                    p.copy_((1 - alpha) * start + alpha * end)
                curves[name].append({"alpha": alpha, **task.evaluate(model, init_model, "val")})
                advance()
    record["interpolation"] = curves
    atomic_write_json(Path(record_path), record)
    return curves
