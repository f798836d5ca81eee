"""`erbench run TASK --algo rloo|grpo`: a task trained by TRL's RLOOTrainer / GRPOTrainer with the Elastic Reset
callback, evaluated by the task and written as the same run record as erbench's PPO.

One iteration is one optimizer step on `train.rollout_prompts` completions (groups of `num_generations`
completions per prompt); the KL coefficient is TRL's fixed beta (`train.kl_coef`; TRL has no adaptive
controller). The method's knobs map onto the callback: decay, reset period and first reset, EMA reset,
optimizer reset, and a KL reference at the EMA (the EMA is kept in TRL's reference model). NLPO and critic
resets need erbench's PPO.
"""

import os
import tempfile
import time
from pathlib import Path

from erbench.config import RunConfig
from erbench.errors import ErbenchError
from erbench.rl.precision import TRAINING_ARGUMENTS, PrecisionProbe
from erbench.results import RECORD_SCHEMA, RunRecord, check_writable, environment, utc_stamp

ALGOS = ("rloo", "grpo")


def group_size(batch: int) -> int:
    """Completions per prompt: the largest of 4, 3, 2 that divides the batch (RLOO and GRPO need >= 2)."""
    for size in (4, 3, 2):
        if batch % size == 0:
            return size
    raise ErbenchError(f"train.rollout_prompts={batch} cannot be split into groups of completions per prompt",
                       "use a multiple of 2, 3 or 4 with --algo rloo/grpo")


def check_supported(cfg: RunConfig, algo: str) -> None:
    if algo not in ALGOS:
        raise ErbenchError(f"unknown algorithm '{algo}'", "use --algo ppo (erbench's PPO), rloo or grpo (TRL)")
    from erbench.registry import registry

    # TRL's trainers generate with a causal LM and its tokenizer from (ids, mask) prompts, and score texts
    if "causal-lm" not in registry().task(cfg.task).capabilities:
        raise ErbenchError(f"--algo {algo} runs tasks with the causal-lm capability only, not {cfg.task}", "run it with --algo ppo")
    if registry().method(cfg.method).hook != "erbench.methods.elastic_reset:ElasticReset":
        raise ErbenchError(f"method {cfg.method} needs erbench's PPO", "run it with --algo ppo")
    if cfg.method_config.reset_critic:
        raise ErbenchError("method.reset_critic: RLOO and GRPO have no critic", "drop it, or use --algo ppo")
    if cfg.method_config.ema_update != "iteration" and cfg.method_config.ema_update != "opt_step":
        raise ErbenchError(f"method.ema_update={cfg.method_config.ema_update} has no TRL counterpart",
                           "use iteration or opt_step (one optimizer step per iteration with --algo rloo/grpo)")


def trainer_config(cfg: RunConfig, algo: str, task, workdir: Path, **overrides):
    """The RLOO/GRPO config of a run: its batch, sampling, optimizer and KL, in erbench's precision (rl/precision.py),
    not TRL's defaults. `overrides` replace fields (benchmarks use them to match erbench's PPO batch shape, and to time
    TRL's own precision defaults)."""
    from trl import GRPOConfig, RLOOConfig

    train = cfg.train
    return (RLOOConfig if algo == "rloo" else GRPOConfig)(**{
        "output_dir": str(workdir / "trainer"), "use_cpu": task.device.type == "cpu", "report_to": "none",
        "save_strategy": "no", "max_steps": train.iterations, "per_device_train_batch_size": train.rollout_prompts,
        "num_generations": group_size(train.rollout_prompts), "max_completion_length": task.cfg.response_tokens,
        "generation_kwargs": {"min_new_tokens": task.cfg.response_tokens}, "temperature": 1.0, "top_p": 1.0,
        "top_k": task.cfg.top_k or None, "learning_rate": train.lr, "lr_scheduler_type": "constant", "warmup_steps": 0,
        "weight_decay": train.weight_decay, "max_grad_norm": train.max_grad_norm, "beta": train.kl_coef,
        "disable_dropout": True, "seed": cfg.seed, "logging_steps": 1, "disable_tqdm": True, **TRAINING_ARGUMENTS, **overrides,
    })


def trl_precision_defaults(algo: str) -> dict:
    """The precision TRL's config would choose itself, as overrides for trainer_config (bf16=None becomes True)."""
    import dataclasses

    from trl import GRPOConfig, RLOOConfig

    fields = dataclasses.fields(RLOOConfig if algo == "rloo" else GRPOConfig)
    return {field.name: field.default for field in fields if field.name in TRAINING_ARGUMENTS}


def build_trainer(cfg: RunConfig, algo: str, task, policy, workdir: Path, callbacks: list, **overrides):
    """TRL's trainer for a task's policy, prompts and reward, with the method's Elastic Reset callback (or None);
    `overrides` go to trainer_config."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    from erbench.integrations.trl import ElasticResetCallback

    mcfg = cfg.method_config
    end = task.tokenizer.id_to_token(task.eot_id)  # the task's end-of-text token, which it never samples
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=task.tokenizer, eos_token=end, pad_token=end, padding_side="left")
    # TRL rebuilds its reference model from config._name_or_path when beta > 0: load the policy from a directory.
    policy.save_pretrained(workdir / "policy")
    tokenizer.save_pretrained(workdir / "policy")
    model = AutoModelForCausalLM.from_pretrained(workdir / "policy")
    dataset = Dataset.from_dict({"prompt": task.decode_prompts(*task.prompts["train"])})

    def reward(prompts, completions, **kwargs) -> list[float]:
        return [float(s) for s in task.reward([p + c for p, c in zip(prompts, completions)])]

    args = trainer_config(cfg, algo, task, workdir, **overrides)
    er = None
    if mcfg.uses_ema:
        er = ElasticResetCallback(mcfg.reset_every, mcfg.ema_decay, reset_ema=mcfg.reset_ema,
                                  reset_optimizer=mcfg.reset_optimizer, first_reset_after=mcfg.first_reset_after)
    trainer_class = RLOOTrainer if algo == "rloo" else GRPOTrainer
    trainer = trainer_class(model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer,
                            callbacks=[c for c in (er, *callbacks) if c is not None])
    trainer.remove_callback(PrinterCallback)  # erbench's record and progress bar report instead
    if er is not None and mcfg.kl_reference == "ema":
        if getattr(trainer, "ref_model", None) is None:
            raise ErbenchError("method.kl_reference=ema needs TRL's reference model, which exists only with beta > 0",
                               "set train.kl_coef > 0, or method.kl_reference=init")
        er.reference_model = trainer.ref_model  # the EMA lives in the reference: the KL pulls towards it
    return trainer, er


def run_trl(cfg: RunConfig, algo: str, out_dir: Path, data_dir: Path | None, cache_dir: Path,
            record_path: Path | None = None) -> tuple[Path, dict]:
    check_supported(cfg, algo)
    if cfg.train.kl_controller != "fixed":
        raise ErbenchError("TRL's KL coefficient is fixed", "resolve the run with --set train.kl_controller=fixed (beta = train.kl_coef)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import trl  # noqa: F401
        from accelerate import PartialState
        from transformers import TrainerCallback
    except ImportError:
        raise ErbenchError(f"--algo {algo} needs TRL", "pip install erbench[trl]") from None
    from erbench.methods.base import frozen_copy
    from erbench.progress import progress_bar
    from erbench.runner import make_task

    main_process = PartialState().is_main_process
    check_writable(record_path.parent if record_path else out_dir)
    task = make_task(cfg, data_dir, cache_dir)
    stamp = utc_stamp()
    method = f"{algo}-{cfg.method}"
    path = record_path or out_dir / f"{cfg.task}-{method}-{cfg.scale}-seed{cfg.seed}-{stamp}.json"
    train = cfg.train
    record = {
        "schema": RECORD_SCHEMA, "status": "running", "started": stamp, **cfg.to_dict(), "method": method,
        "algo": {"name": algo, "method": cfg.method, "num_generations": group_size(train.rollout_prompts), "beta": train.kl_coef},
        "environment": {**environment(), "device": str(task.device)},
        "timings": {}, "train_curve": [], "eval_curve": [], "resets": [], "final": {},
    }
    # under `accelerate launch` every process evaluates (no collectives), one writes
    log = RunRecord(path, record, writes=main_process)
    started = time.perf_counter()
    try:
        record["assets"] = task.prepare()
        policy = task.load_policy()
        init_model = frozen_copy(policy).eval()

        def evaluate(model, step: int, split: str = "val") -> dict:
            was_training = model.training
            model.eval()
            t0 = time.perf_counter()
            metrics = task.evaluate(model, init_model, split, samples=train.eval_samples)
            record["timings"]["evaluate_seconds"] = record["timings"].get("evaluate_seconds", 0.0) + time.perf_counter() - t0
            model.train(was_training)
            return log.add_eval(step, metrics, split=split)

        with tempfile.TemporaryDirectory() as tmp, progress_bar(f"{cfg.task} {method}", train.iterations) as advance:
            class Record(TrainerCallback):
                """Keeps the record current and evaluates with the task every eval_every steps."""

                def on_log(self, args, state, control, logs=None, **kwargs):
                    if logs and "reward" in logs:
                        step = state.global_step
                        record["train_curve"].append({"iteration": step, "score": logs["reward"], "kl": logs.get("kl", 0.0),
                                                      "kl_coef": train.kl_coef, "reset": step in record["resets"]})
                        advance(info=f"score {logs['reward']:.3f}")

                def on_step_end(self, args, state, control, model=None, **kwargs):
                    step = state.global_step
                    if er is not None and er.resets and er.resets[-1] == step:
                        record["resets"].append(step)
                    if step % train.eval_every == 0 or step == train.iterations:
                        evaluate(model, step)

            trainer, er = build_trainer(cfg, algo, task, policy, Path(tmp), [Record()])
            record["precision"] = PrecisionProbe(trainer.model).observed  # filled by the policy's forwards
            evaluate(trainer.model, 0)
            trainer.train()
            evaluate(trainer.model, train.iterations, "test")
        record["status"] = "completed"
    except BaseException as e:
        record["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        record["finished"] = utc_stamp()
        record["timings"]["total_seconds"] = time.perf_counter() - started
        if path.exists():
            log.write()
    return path, record
