"""Run records: one JSON file per run, always written atomically (temp file + rename)."""

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from erbench import __version__, cpu
from erbench.errors import ErbenchError

RECORD_SCHEMA = "erbench.run/1"


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=True))


def atomic_write_text(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; a record is meant to be shared
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
