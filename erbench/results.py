"""Run records: one JSON file per run, always written atomically (temp file + rename)."""

import errno
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from erbench import __version__, cpu
from erbench.errors import ErbenchError
from erbench.trackers import Tracker

RECORD_SCHEMA = "erbench.run/1"


def utc_stamp() -> str:
    """A record's `started` and `finished` time: UTC to the second, in an order that sorts as text."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1, allow_nan=True))


def check_writable(folder: Path, what: str = "run records") -> None:
    """Fail before any work starts when `folder` cannot be created or written (a probe file is made and removed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".erbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ErbenchError(f"cannot write {what} to {folder}: {e.strerror or e}",
                           "give --out a folder you can create and write to") from None


def atomic_write(path: Path, content: str | bytes | Iterable[str]) -> None:
    """A reader sees the old file or the new one, never half of one; a full disk is one line naming what was kept.
    `content` is text, bytes, or text chunks (a large file written as it is produced)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; a record is meant to be shared
        binary = isinstance(content, bytes)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            f.writelines([content] if isinstance(content, (str, bytes)) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "keeps its last complete version" if path.exists() else "was not written"
            raise ErbenchError(f"no space left on the disk of {path.parent} ({path.name} {kept})",
                               "free some space or give --out another disk, then run again (--resume continues "
                               "a run saved with --checkpoint-every)") from None
        raise


def read_record(path: Path, fix: str) -> dict:
    """A completed run record, or an ErbenchError naming the problem and `fix`."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ErbenchError(f"cannot read run record {path}: {e}", fix) from None
    if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
        raise ErbenchError(f"{path} is not an {RECORD_SCHEMA} run record", fix)
    if record.get("status") != "completed":
        raise ErbenchError(f"{path} is a run with status {record.get('status')!r}, not a completed one", fix)
    return record


def summary_lines(record: dict, path: Path, drift_metrics: Iterable[str]) -> list[str]:
    """What `erbench run` prints when a run ends: final val and test reward and drift, the resets, the record."""
    lines = [f"{split:4s} " + "  ".join(f"{k} {record['final'][split][k]:.4f}" for k in ("reward", *drift_metrics)
                                         if k in record["final"][split]) for split in ("val", "test")]
    return lines + [f"resets after iterations: {record['resets'] or 'none'}", f"record: {path}"]


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    import sacrebleu
    import sklearn
    import torch
    import transformers

    return {
        "erbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "scikit-learn": sklearn.__version__,
        "sacrebleu": sacrebleu.__version__,
        "git_commit": git_commit(), "platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cpu_code_paths": cpu.code_paths(),
    }


def samples_path(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + ".samples.jsonl")


class RunRecord:
    """A run's record and, beside it, its samples file (JSONL: one evaluation sample per line, keyed by iteration,
    split and model). Every write replaces the samples file, then the record, each atomically, so a record never
    names samples that are not on disk. A tracker (erbench.trackers) sees every entry as it is added."""

    def __init__(self, path: Path, data: dict, tracker=None, writes: bool = True):
        self.path, self.data, self.writes = path, data, writes
        self.tracker = tracker or Tracker()
        self.samples_path = samples_path(path)
        self.samples: list[dict] = []

    def keep_samples_until(self, iteration: int) -> None:
        """On resume: the samples of the evaluations the checkpoint has seen (those after it are redone)."""
        lines = self.samples_path.read_text().splitlines() if self.samples_path.exists() else []
        self.samples = [s for s in map(json.loads, lines) if s["split"] == "val" and s["iteration"] <= iteration]

    def add_train(self, stats: dict) -> None:
        self.data["train_curve"].append(stats)
        if stats["reset"]:
            self.data["resets"].append(stats["iteration"])
        self.tracker.log_train(stats)

    def add_eval(self, iteration: int, metrics: dict, ema_metrics: dict | None = None, split: str = "val") -> dict:
        """Record one evaluation (val: a point of the curves; test: the final one); returns the metrics without samples."""
        metrics, new_samples = self.take_samples(metrics, iteration, split, "policy")
        if ema_metrics is not None:
            ema_metrics, ema_samples = self.take_samples(ema_metrics, iteration, split, "ema")
            new_samples += ema_samples
        if split == "val":
            point = {"iteration": iteration, "resets_so_far": len(self.data["resets"])}
            self.data["eval_curve"].append({**point, **metrics})
            if ema_metrics is not None:
                self.data["ema_eval_curve"].append({**point, **ema_metrics})
        else:
            self.data["final"] = {"val": self.data["eval_curve"][-1], split: metrics}
        self.tracker.log_eval(iteration, metrics, ema_metrics, new_samples, prefix="eval" if split == "val" else split)
        self.write()
        return metrics

    def take_samples(self, metrics: dict, iteration: int, split: str, model: str) -> tuple[dict, list[dict]]:
        metrics = dict(metrics)
        samples = [{"iteration": iteration, "split": split, "model": model, "index": index, **sample}
                   for index, sample in enumerate(metrics.pop("samples", []))]
        self.samples += samples
        return metrics, samples

    def write(self) -> None:
        if not self.writes:
            return
        if self.samples:
            atomic_write(self.samples_path, (json.dumps(s, allow_nan=True) + "\n" for s in self.samples))
            self.data["samples_file"] = self.samples_path.name
        atomic_write_json(self.path, self.data)
