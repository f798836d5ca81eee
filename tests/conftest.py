import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

os.environ.setdefault("ERBENCH_QUIET", "1")


@pytest.fixture
def tiny_lm():
    """A randomly initialised 2-layer GPT-2 (the tiny scale's architecture, smaller)."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


DATA_DIR = Path(os.environ.get("ERBENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# A tiny scale shrunk further so the real pipeline (data, BPE, LM pretraining, TF-IDF reward,
# PPO, evaluation, record) runs in seconds. Every run in the tests shares these asset settings.
FAST = [
    "task.lm_train_tokens=50000", "task.eval_prompts=8", "task.test_prompts=8", "task.ppl_reviews=5",
    "train.iterations=4", "train.rollout_prompts=8", "train.num_minibatches=2", "train.ppo_epochs=2",
    "train.eval_every=2", "method.reset_every=2", "method.first_reset_after=none",
]


def erbench(*args: str, cache_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, offline."""
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_OFFLINE": "1", "ERBENCH_CACHE": str(cache_dir)}
    return subprocess.run([sys.executable, "-m", "erbench.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def erbench_in_process(*args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    """The same command line run inside the test process, for inputs refused before any work starts (a subprocess
    spends seconds importing torch per case). Not for --include-path, which extends this process's registry."""
    from typer.testing import CliRunner

    from erbench.cli import app

    assert "--include-path" not in args, "--include-path changes the registry of the process: use erbench()"
    env = {"ERBENCH_QUIET": "1", "ERBENCH_OFFLINE": "1", "ERBENCH_CACHE": str(cache_dir)}
    argv, sys.argv = sys.argv, ["erbench", *args]  # what a command echoes back of its own command line
    try:
        result = CliRunner().invoke(app, list(args), env=env)
    finally:
        sys.argv = argv
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback where a one-line error was due: fail with it
    return subprocess.CompletedProcess(["erbench", *args], result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    """Bad input: exit code 2 and a single `error: ...` line naming the problem."""
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def assert_damaged_cache_is_one_line(cache: Path, task: str, damage, run_args: list[str], message: str, tmp_path: Path) -> None:
    """A copy of `cache` with `damage(asset_folder)` done to the task's prepared assets: `erbench run TASK ...` on it
    fails in one line naming the problem and the rebuild, `erbench prepare TASK --force`."""
    damaged = tmp_path / "damaged-cache"
    shutil.copytree(cache / task, damaged / task)
    [assets] = [p for p in (damaged / task).iterdir() if p.is_dir()]
    damage(assets)
    result = erbench("run", task, "--data-dir", str(DATA_DIR), "--out", str(tmp_path / "runs"), *run_args, cache_dir=damaged)
    assert_one_line_error(result, message)
    assert f"erbench prepare {task} --force" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # refused before any record


def truncate(path: Path) -> None:
    """A weight file cut short, as a full disk or a killed copy leaves it."""
    path.write_bytes(path.read_bytes()[:64])


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A cache holding the FAST tiny assets, built once by `erbench prepare`."""
    if not (DATA_DIR / "imdb" / "aclImdb_v1.tar.gz").exists():
        pytest.fail(f"IMDB data missing at {DATA_DIR}; set ERBENCH_DATA to the shared data folder")
    cache = tmp_path_factory.mktemp("cache")
    result = erbench("prepare", "imdb", "--data-dir", str(DATA_DIR), *sets(*FAST), cache_dir=cache)
    assert result.returncode == 0, result.stderr
    return cache


ASSET_FIXTURES = {"cache_dir", "translation_cache", "stack_cache"}  # each builds a task's assets with `erbench prepare`


def pytest_collection_modifyitems(items):
    """The end-to-end tier: a test that needs prepared assets (an ASSET_FIXTURES fixture, directly or through another
    fixture) trains through the real CLI; tests that build their own carry @pytest.mark.e2e.
    `pytest -m "not e2e"` is the fast tier a contributor runs on every change."""
    for item in items:
        if ASSET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
