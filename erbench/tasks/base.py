"""The parts of the task protocol most tasks share; a task overrides what it needs (see rl/ppo.py for the protocol)."""

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from erbench import cpu
from erbench.errors import ErbenchError
from erbench.progress import say
from erbench.rl.policy import Critic


@contextmanager
def key_lock(path: Path, waiting: str):
    """An exclusive flock of the file `path`, which the holder removes as it releases it (a failed build leaves no
    file behind); a waiter that then holds a removed file's lock takes the lock of the current file instead."""
    while True:
        with open(path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say(waiting)
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.fstat(lock.fileno()).st_ino != os.stat(path).st_ino:
                    continue
            except FileNotFoundError:
                continue
            try:
                yield
            finally:
                path.unlink()
            return


class Task:
    name: str  # the registry name; the cache folder of its assets
    asset_fields: tuple[str, ...] = ()  # config fields that shape the prepared assets (their cache key)
    asset_revision = 0  # raised when the code that builds the assets changes them: caches of the old build go unused

    def __init__(self, cfg, data_dir: Path | None, cache_dir: Path, device, seed: int = 0):
        self.cfg, self.data_dir, self.cache_dir, self.device, self.seed = cfg, data_dir, cache_dir, device, seed
        # Assets built on the portable path live apart: a check must never train from natively built ones.
        self.asset_dir = cache_dir / self.name / (self.asset_key() + ("-portable" if cpu.portable() else ""))

    def asset_config(self) -> dict:
        return {k: v for k, v in asdict(self.cfg).items() if k in self.asset_fields}

    def asset_key(self) -> str:
        """A hash of the fields that shape the assets: changing one of them rebuilds, changing others does not."""
        keyed = self.asset_config() | ({"revision": self.asset_revision} if self.asset_revision else {})
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]

    def prepare(self, force: bool = False) -> dict:
        """The prepared assets' meta, building them first when missing, corrupt or forced. The build holds a lock of
        the asset key for its whole length, so processes needing the same assets on one machine (a sweep's runs on a
        cold cache) build them once: the others wait and reuse them. `build_assets(folder)` fills a temporary folder
        that is renamed into `self.asset_dir` only once complete, so a killed build never leaves a partial one."""
        meta = None if force else self.prepared_meta()
        if meta is not None:
            return meta
        self.asset_dir.parent.mkdir(parents=True, exist_ok=True)
        with key_lock(self.asset_dir.parent / f".{self.asset_dir.name}.lock", f"waiting for another process building {self.asset_dir}"):
            meta = None if force else self.prepared_meta(quiet=True)
            if meta is not None:
                return meta  # built by the process this one waited for
            tmp = Path(tempfile.mkdtemp(dir=self.asset_dir.parent, prefix=f"{self.asset_dir.name}.tmp-"))
            try:
                start = time.perf_counter()
                meta = {"config": self.asset_config(), **self.build_assets(tmp)}
                meta["prepare_seconds"] = time.perf_counter() - start
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
                shutil.rmtree(self.asset_dir, ignore_errors=True)  # forced, or a corrupt folder: never a complete one
                tmp.rename(self.asset_dir)
                return meta
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def prepared_meta(self, quiet: bool = False) -> dict | None:
        """The meta of complete prepared assets, or None (missing, or a corrupt meta.json: rebuilt)."""
        meta_path = self.asset_dir / "meta.json"
        if not meta_path.exists():
            return None
        try:
            return json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            if not quiet:
                say(f"rebuilding {self.asset_dir}: its meta.json is corrupt")
            return None

    @contextmanager
    def loading_assets(self, what: str, also: str = ""):
        """A missing, damaged or foreign file among the prepared assets becomes one line naming the rebuild; the
        libraries that read them raise OSError, safetensors' SafetensorError or, for a foreign state dict,
        RuntimeError / KeyError / ValueError."""
        from safetensors import SafetensorError

        try:
            yield
        except (OSError, RuntimeError, KeyError, ValueError, SafetensorError) as e:
            raise ErbenchError(f"cannot load {what}: {e}",
                               f"run `erbench prepare {self.name} --force` (assets: {self.asset_dir}){also}") from None

    def build_assets(self, folder: Path) -> dict:
        """Write the task's models into `folder`; returns what to record about them."""
        return {}

    def decode_prompts(self, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """Causal-LM tasks (a `tokenizers.Tokenizer` as `self.tokenizer`): the prompts' text with their special tokens
        (a hub chat template's <|im_start|> ...), as TRL's trainers re-tokenize it."""
        return self.tokenizer.decode_batch([row[m.bool()].tolist() for row, m in zip(ids.cpu(), mask.cpu())],
                                           skip_special_tokens=False)

    def make_critic(self, policy: nn.Module) -> nn.Module:
        """The value model; by default a causal LM's transformer with a scalar head."""
        return Critic(policy)

    def learn(self, rollout) -> dict[str, float]:
        """Train the task's own models (a listener, say) on a rollout; returns their statistics. Default: none."""
        return {}

    def on_policy_reset(self) -> None:
        """Called after a method resets the policy."""

    def state_dict(self) -> dict:
        """What the task's own models learned during training (for checkpoints). Default: nothing."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
