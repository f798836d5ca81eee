"""`erbench run --resume`: a killed run continues from its checkpoint and ends with the uninterrupted metrics."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

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

