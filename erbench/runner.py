"""One run, end to end: resolve the config, prepare the task, train with PPO + the method hook, write the record."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import torch

from erbench import checkpoint
from erbench.config import RunConfig, resolve
from erbench.errors import ErbenchError
from erbench.methods.base import frozen_copy, method_knobs
from erbench.progress import progress_bar, say
from erbench.registry import load_method_hook, load_task_class
from erbench.results import RECORD_SCHEMA, RunRecord, check_writable, environment, utc_stamp
from erbench.rl.ppo import PPOTrainer, make_optimizer
from erbench.rl.precision import PrecisionProbe
from erbench.trackers import open_tracker


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ErbenchError(f"train.device={name} but no CUDA device is available", "use --set train.device=cpu (or auto)")
    device = torch.device(name)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls for the fp32 RL phase
    return device


def default_cache_dir() -> Path:
    return Path(os.environ.get("ERBENCH_CACHE", Path.home() / ".cache" / "erbench"))


def default_data_dir() -> Path | None:
    return Path(os.environ["ERBENCH_DATA"]) if os.environ.get("ERBENCH_DATA") else None


def make_task(cfg: RunConfig, data_dir: Path | None, cache_dir: Path):
    task_class = load_task_class(cfg.task)
    return task_class(cfg.task_config, data_dir, cache_dir, pick_device(cfg.train.device), seed=cfg.seed)


def resolve_run(task: str, method: str, scale: str, seed: int, sets: list[str]) -> RunConfig:
    return resolve(task, scale, method, seed, sets)


def build_trainer(cfg: RunConfig, task) -> PPOTrainer:
    """Seed, load the initial policy, and wire theta0, critic, optimizer and the method hook into a trainer."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    policy = task.load_policy().eval()  # eval mode throughout: no dropout noise in PPO ratios
    init_model = frozen_copy(policy)
    critic = task.make_critic(policy).to(task.device).eval()
    optimizer = make_optimizer([policy, critic], cfg.train)
    method = load_method_hook(cfg.method)(cfg.method_config, policy, init_model, critic, optimizer)
    return PPOTrainer(cfg.train, task, policy, critic, optimizer, method, generator)


def run(cfg: RunConfig, out_dir: Path, data_dir: Path | None, cache_dir: Path, record_path: Path | None = None,
        resume: bool = False, checkpoint_every: int = 0, report_to: str = "none",
        tracker_dir: Path | None = None) -> tuple[Path, dict]:
    """Train one policy; the record is rewritten atomically after every evaluation and at the end.

    `record_path` fixes the record's file (sweeps); otherwise it is named after the run and its start time.
    With `checkpoint_every` k > 0 the training state is saved every k iterations; `resume` continues the
    unfinished run of this configuration (the one at `record_path`, else the newest under `out_dir`).
    `report_to` also logs the run to a tracker (erbench.trackers), in `tracker_dir` (default: beside the record,
    in a folder named after the tracker)."""
    config = json.loads(json.dumps(cfg.to_dict()))  # as a record stores it
    check_writable(record_path.parent if record_path else out_dir)  # before any asset is built
    task = make_task(cfg, data_dir, cache_dir)
    stamp = utc_stamp()
    if resume:
        path = record_path or unfinished_record(out_dir, config)
    else:
        path = record_path or out_dir / f"{cfg.task}-{cfg.method}-{cfg.scale}-seed{cfg.seed}-{stamp}.json"
    say(run_summary(cfg, task.device, path))
    resume_dir = cache_dir / "checkpoints" / path.stem / "resume"
    start, resumed = 0, None
    if resume:
        try:
            previous = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = {}  # no record, or a broken one: the checkpoint carries the record so far
        if isinstance(previous, dict) and previous.get("status") == "completed":
            raise ErbenchError(f"{path} is already a completed run", "run without --resume to train it again")
        start, resumed, record = checkpoint.load(resume_dir, config)
        record.setdefault("resumed", []).append({"from_iteration": start, "at": stamp})
        record["status"] = "running"
        record.pop("error", None)
    else:
        shutil.rmtree(resume_dir, ignore_errors=True)  # a stale checkpoint of an earlier run under this name
        record = {
            "schema": RECORD_SCHEMA, "status": "running", "started": stamp, **cfg.to_dict(),
            "environment": {**environment(), "device": str(task.device),
                            "device_name": torch.cuda.get_device_name(task.device) if task.device.type == "cuda" else "cpu"},
            "timings": {}, "train_curve": [], "eval_curve": [], "resets": [], "final": {},
            **({"ema_eval_curve": []} if cfg.train.eval_ema else {}),
        }
    if checkpoint_every:
        record["resume_checkpoint"] = str(resume_dir)
    # a sweep's records are named <setting>-seed<k>: its seeds of a setting share a group
    group = re.sub(r"-seed\d+$", "", path.stem) if record_path else f"{cfg.task}-{cfg.method}-{cfg.scale}"
    tracker = open_tracker(report_to, tracker_dir or path.parent / report_to, path.stem, group, config)
    tracker.resets = len(record["resets"])  # a resumed run's count goes on
    log = RunRecord(path, record, tracker)
    if resume:
        log.keep_samples_until(start)
    earlier_seconds = record["timings"].get("total_seconds", 0.0)
    started, trainer = time.perf_counter(), None
    try:
        record["assets"] = task.prepare()
        if not resume:
            record["timings"]["prepare_seconds"] = time.perf_counter() - started
        trainer = build_trainer(cfg, task)
        record["precision"] = PrecisionProbe(trainer.policy).observed  # filled by the policy's forwards
        if resumed is not None:
            checkpoint.restore(trainer, resumed)
        log.write()

        with progress_bar(f"{cfg.task} {cfg.method}", cfg.train.iterations) as advance:
            advance(start)

            def on_iteration(stats: dict):
                log.add_train(stats)
                advance(info=f"score {stats['score']:.3f} kl {stats['kl']:.3f}" + (" reset" if stats["reset"] else ""))

            def on_eval(iteration: int, metrics: dict, ema_metrics: dict | None):
                record["timings"].update({f"{k}_seconds": v for k, v in trainer.seconds.items()})
                log.add_eval(iteration, metrics, ema_metrics)

            def after_iteration(done: int):
                if checkpoint_every and done % checkpoint_every == 0 and done < cfg.train.iterations:
                    record["timings"]["total_seconds"] = earlier_seconds + time.perf_counter() - started
                    checkpoint.save(resume_dir, done, trainer.state_dict(), config, record)
                    log.write()

            trainer.train(on_iteration, on_eval, start, after_iteration)
        log.add_eval(cfg.train.iterations, trainer.evaluate("test"), split="test")
        record["checkpoint"] = str(save_weights(trainer.method, cache_dir / "checkpoints" / path.stem))
        record["status"] = "completed"
        record.pop("resume_checkpoint", None)
        shutil.rmtree(resume_dir, ignore_errors=True)
    except BaseException as e:
        record["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        record["finished"] = utc_stamp()  # when this sitting ended, whatever its status
        record["timings"]["total_seconds"] = earlier_seconds + time.perf_counter() - started
        if trainer is not None:
            record["timings"].update({f"{k}_seconds": v for k, v in trainer.seconds.items()})
        if path.exists():  # a run that failed before training started leaves no record
            log.write()
        tracker.close()
    return path, record


def run_summary(cfg: RunConfig, device: torch.device, path: Path) -> str:
    """What is about to run: the run, where, the record, and the knobs that define the method (its own and beta)."""
    train = cfg.train
    beta = f"beta {train.kl_coef:g} ({train.kl_controller}" + (f", target KL {train.kl_target:g})" if train.kl_controller == "adaptive" else ")")
    knobs = [f"{key} {value}" for key, value in method_knobs(cfg.method_config).items()] + [beta]
    return "\n".join([
        f"[bold]{cfg.task}[/bold] · method [bold]{cfg.method}[/bold] · scale {cfg.scale} · seed {cfg.seed} · "
        f"{train.iterations} iterations, evaluated every {train.eval_every}",
        f"device {device} · {torch.get_num_threads()} threads · record {path}",
        "method: " + ", ".join(knobs),
    ])


def unfinished_record(out_dir: Path, config: dict) -> Path:
    """The newest record under `out_dir` of a run with this configuration that did not complete."""
    candidates = []
    for path in Path(out_dir).glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if (isinstance(record, dict) and record.get("schema") == RECORD_SCHEMA and record.get("status") != "completed"
                and all(record.get(key) == value for key, value in config.items())):
            candidates.append((record.get("started", ""), path))
    if not candidates:
        raise ErbenchError(f"no unfinished run of this configuration under {out_dir}",
                           "run without --resume, or give the interrupted run's --out folder and the same settings")
    return max(candidates)[1]


def save_weights(method, folder: Path) -> Path:
    """The final online policy (and a separate EMA) as safetensors, for `erbench interpolate`."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(method.online_model, str(folder / "policy.safetensors"))
    if method.ema_model is not None and method.ema_model is not method.init_model:
        save_model(method.ema_model, str(folder / "ema.safetensors"))
    return folder


def prepare(task: str, scale: str, data_dir: Path | None, cache_dir: Path, sets: list[str], force: bool) -> dict:
    cfg = resolve_run(task, "ppo", scale, 0, sets)
    return make_task(cfg, data_dir, cache_dir).prepare(force=force)

