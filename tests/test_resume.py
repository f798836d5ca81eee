"""`erbench run --resume`: a killed run continues from its checkpoint and ends with the uninterrupted metrics."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import DATA_DIR, FAST, erbench, sets

RUN = ["run", "imdb", "--method", "elastic", "--data-dir", str(DATA_DIR), *sets(*FAST)]


def test_kill_and_resume_gives_the_uninterrupted_metrics(tmp_path, cache_dir):
    whole = erbench(*RUN, "--out", str(tmp_path / "whole"), cache_dir=cache_dir)
    assert whole.returncode == 0, whole.stderr
    [reference] = [json.loads(p.read_text()) for p in (tmp_path / "whole").glob("*.json")]

    out = tmp_path / "killed"
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(cache_dir)}
    run = subprocess.Popen([sys.executable, "-m", "erbench.cli", *RUN, "--out", str(out), "--checkpoint-every", "1"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    manifests = cache_dir / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline:
        found = list(manifests.glob("imdb-elastic-tiny-seed0-*/resume/manifest.json"))
        if found:
            break
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    [record_path] = out.glob("*.json")
    assert json.loads(record_path.read_text())["status"] == "running"  # killed: the record never got to say so
    checkpoint = found[0].parent

    # A corrupt checkpoint is refused with one line, never used.
    saved = tmp_path / "saved-checkpoint"
    shutil.copytree(checkpoint, saved)
    [state] = checkpoint.glob("state-*.pt")
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    refused = erbench(*RUN, "--out", str(out), "--checkpoint-every", "1", "--resume", cache_dir=cache_dir)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error: corrupt checkpoint") and "checksum" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    shutil.rmtree(checkpoint)
    shutil.copytree(saved, checkpoint)

    resumed = erbench(*RUN, "--out", str(out), "--checkpoint-every", "1", "--resume", cache_dir=cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(record_path.read_text())
    assert record["status"] == "completed" and 1 <= record["resumed"][0]["from_iteration"] < 4
    for key in ("train_curve", "eval_curve", "resets", "final"):
        assert record[key] == reference[key], key
    # the samples of evaluations after the checkpoint were redone, not doubled
    whole_samples = (tmp_path / "whole" / reference["samples_file"]).read_text()
    assert (out / record["samples_file"]).read_text() == whole_samples
    assert not checkpoint.exists()  # a completed run leaves no resume state behind

    again = erbench(*RUN, "--out", str(out), "--resume", cache_dir=cache_dir)
    assert again.returncode == 2 and "no unfinished run of this configuration" in again.stderr



def test_sigterm_leaves_an_interrupted_record(tmp_path, cache_dir):
    """What timeout, SLURM preemption and Ray cancellation send: the record says interrupted, not running."""
    out = tmp_path / "out"
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(cache_dir)}
    run = subprocess.Popen([sys.executable, "-m", "erbench.cli", *RUN, "--out", str(out), *sets("train.iterations=400")],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(json.loads(p.read_text()).get("train_curve") for p in out.glob("*.json")):  # training has begun
        assert run.poll() is None and time.time() < deadline, run.stderr.read()
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 130  # the shell's code for a run stopped by a signal
    [record] = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert record["status"] == "interrupted" and record["error"].startswith("KeyboardInterrupt")


@pytest.mark.e2e
def test_two_prepares_at_once_both_succeed_with_one_asset_folder(tmp_path):
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "erbench.cli", "prepare", "imdb", "--data-dir", str(DATA_DIR), *sets(*FAST)]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=600) == 0, run.stderr.read()
    [folder] = [p for p in (tmp_path / "imdb").iterdir() if p.is_dir()]  # no temporary folder left behind
    assert json.loads((folder / "meta.json").read_text())["lm_steps"] > 0 and (folder / "lm").is_dir()
    again = erbench("run", "imdb", "--method", "ppo", "--data-dir", str(DATA_DIR), "--out", str(tmp_path / "out"),
                    *sets(*FAST, "train.iterations=1"), cache_dir=tmp_path)
    assert again.returncode == 0, again.stderr
