"""Resume checkpoints: a run's whole training state every k iterations, written atomically and verified on load.

A checkpoint folder holds `state-<iteration>.pt` (torch.save of the trainer's state and the torch RNG) and
`manifest.json`, written last and atomically, which names the state file, its SHA-256, the run's config and the
run record as it was at that iteration. A reader trusts only the manifest: a crash while writing a state file
leaves the previous manifest pointing at the previous, complete file; a state file whose bytes do not match
its checksum is refused, never loaded.
"""

import hashlib
import io
import json
from pathlib import Path

import torch

from erbench.errors import ErbenchError
from erbench.results import atomic_write, atomic_write_json

CHECKPOINT_SCHEMA = "erbench.checkpoint/1"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, iteration: int, state: dict, config: dict, record: dict) -> None:
    """Write the state of a run that has completed `iteration` iterations; older state files are removed after."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"trainer": state, "rng": rng_state()}, buffer)
    payload = buffer.getvalue()
    name = f"state-{iteration}.pt"
    atomic_write(folder / name, payload)
    atomic_write_json(folder / "manifest.json", {
        "schema": CHECKPOINT_SCHEMA, "iteration": iteration, "state": name,
        "sha256": hashlib.sha256(payload).hexdigest(), "config": config, "record": record,
    })
    for old in folder.glob("state-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


def exists(folder: Path) -> bool:
    return (folder / "manifest.json").exists()


def load(folder: Path, config: dict) -> tuple[int, dict, dict]:
    """(iteration, trainer state, record snapshot) of the checkpoint in `folder`, for a run of `config`."""
    fix = f"delete {folder} and start the run again without --resume"
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ErbenchError(f"no checkpoint in {folder}", "run without --resume (checkpoints are written every "
                           "--checkpoint-every iterations)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ErbenchError(f"corrupt checkpoint manifest {manifest_path}: {e}", fix) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != CHECKPOINT_SCHEMA:
        raise ErbenchError(f"{manifest_path} is not an {CHECKPOINT_SCHEMA} manifest", fix)
    if manifest.get("config") != config:
        raise ErbenchError(f"the checkpoint in {folder} belongs to a run with another configuration", fix)
    state_path = folder / manifest["state"]
    try:
        payload = state_path.read_bytes()
    except OSError as e:
        raise ErbenchError(f"cannot read checkpoint {state_path}: {e}", fix) from None
    if hashlib.sha256(payload).hexdigest() != manifest["sha256"]:
        raise ErbenchError(f"corrupt checkpoint {state_path}: its checksum does not match the manifest", fix)
    try:
        data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # a checksum-valid file that torch cannot read: refuse it all the same
        raise ErbenchError(f"corrupt checkpoint {state_path}: {type(e).__name__}: {e}", fix) from None
    return manifest["iteration"], data, manifest["record"]


def restore(trainer, data: dict) -> None:
    """Put a freshly built trainer (and the global torch RNG) in the state `load` returned."""
    trainer.load_state_dict(data["trainer"])
    set_rng_state(data["rng"])
