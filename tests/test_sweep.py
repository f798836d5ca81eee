"""`erbench sweep` through the command line: resume by skipping after a kill, failures recorded, the Ray launcher."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from conftest import DATA_DIR, FAST, assert_one_line_error, erbench, erbench_in_process, sets

GRID = 'methods = ["ppo", "elastic"]\n'


def sweep_args(grid, out, *extra: str) -> list[str]:
    return ["sweep", "imdb", "--grid", str(grid), "--scale", "tiny", "--out", str(out), "--data-dir", str(DATA_DIR),
            *sets(*FAST), *extra]


def records(out) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}


def test_killed_sweep_resumes_only_the_missing_runs(tmp_path, cache_dir):
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text(GRID)
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(cache_dir)}
    first = subprocess.Popen([sys.executable, "-m", "erbench.cli", *sweep_args(grid, out, "--seeds", "2", "--jobs", "1")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while not any(r.get("status") == "completed" for r in records(out).values()) and time.time() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the sweep and the run it is in the middle of, as a crash would
    first.wait()
    before = {name: r for name, r in records(out).items() if r.get("status") == "completed"}
    assert 1 <= len(before) < 4

    result = erbench(*sweep_args(grid, out, "--seeds", "2", "--jobs", "2"), cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert f"done {4 - len(before)}, skipped {len(before)}, failed 0" in result.stdout
    after = records(out)
    assert len(after) == 4
    assert all(r["status"] == "completed" for r in after.values())
    for name, record in before.items():
        assert after[name] == record  # skipped, not re-run
    assert {(r["method"], r["seed"]) for r in after.values()} == {(m, s) for m in ("ppo", "elastic") for s in (0, 1)}

    again = erbench(*sweep_args(grid, out, "--seeds", "2"), cache_dir=cache_dir)
    assert again.returncode == 0 and "done 0, skipped 4, failed 0" in again.stdout

    report = erbench("report", "--results", str(out), "--format", "json", cache_dir=cache_dir)
    assert report.returncode == 0, report.stderr
    rows = {row["method"]: row for row in json.loads(report.stdout)}
    assert set(rows) == {"ppo", "elastic"} and all(row["n_seeds"] == 2 for row in rows.values())


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, cache_dir):
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text('methods = ["ppo"]\nsettings = [{ "train.device" = "cuda:99" }, {}]\n')
    result = erbench(*sweep_args(grid, out, "--seeds", "1", "--jobs", "2"), cache_dir=cache_dir)
    assert result.returncode == 1
    assert "done 1, skipped 0, failed 1" in result.stdout
    found = records(out)
    [failed] = [r for name, r in found.items() if "devicecuda99" in name]
    [completed] = [r for name, r in found.items() if "default" in name]
    assert failed["status"] == "failed" and "cuda" in failed["error"].lower()
    assert completed["status"] == "completed"
    assert "failed imdb-ppo-tiny-devicecuda99" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--grid", "nope"], "unknown grid 'nope' for task imdb; choose one of: "),
    (["--grid", "paper", "--jobs", "0"], "--jobs 0"),
    (["--grid", "paper", "--launcher", "slurm"], "unknown launcher 'slurm'"),
    (["--grid", "paper", "--address", "1.2.3.4:6379"], "--address is for the Ray launcher"),
    (["--grid", "paper", "--set", "method.ema_decay=2"], "method.ema_decay must be in [0, 1]"),
])
def test_bad_sweep_input_exits_2_with_one_line(tmp_path, args, message):
    result = erbench_in_process("sweep", "imdb", "--seeds", "1", "--out", str(tmp_path / "out"), *args, cache_dir=tmp_path)
    assert_one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def builtin_methods_for(task: str) -> set[str]:
    """erbench's own methods that apply to the task (an installed plugin's methods are not in its paper grid)."""
    from erbench.registry import registry

    methods = registry().methods
    return {name for name in registry().methods_for(task) if methods[name].package is None}


def test_paper_grid_covers_every_method_and_the_swept_knobs():
    from erbench.sweep import expand, load_grid

    jobs = expand("imdb", load_grid("imdb", "paper"), "tiny", 5, [])
    assert {job.method for job in jobs} == builtin_methods_for("imdb")
    assert len({job.name for job in jobs}) == len(jobs) and [job.seed for job in jobs] == sorted(job.seed for job in jobs)
    ablation_seeds = {job.seed for job in jobs if "method.reset_critic=true" in job.sets}
    main_seeds = {job.seed for job in jobs if job.method == "reset-ema"}
    assert ablation_seeds == {0, 1, 2} and main_seeds == {0, 1, 2, 3, 4}  # the cell's seeds = 3 caps --seeds 5
    settings = {(job.method, item) for job in jobs for item in job.sets}
    for coef in ("0.001", "0.1", "1.0"):
        assert ("ppo", f"train.kl_coef={coef}") in settings
    for decay in ("0.9", "0.95", "0.99", "0.999"):
        assert ("elastic", f"method.ema_decay={decay}") in settings
    for every in ("10", "20", "26", "35"):
        assert ("elastic", f"method.reset_every={every}") in settings


@pytest.mark.parametrize("task", ["translation", "stackllama", "arith"])
def test_every_task_has_a_paper_grid_over_its_methods(task):
    from erbench.sweep import expand, load_grid

    methods = {job.method for job in expand(task, load_grid(task, "paper"), "tiny", 1, [])}
    paper_rows = builtin_methods_for(task) if task != "stackllama" else {"ppo", "ppo-nokl", "reset", "elastic", "ref-reset"}
    assert methods == paper_rows  # StackLLaMA: the paper's rows, its IMDB controls and the reference reset


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def started_ray_head():
    """`ray start --head --block` on this machine (2 CPUs) at a free port: its address and process. Stopping its process
    group stops the processes it started and no others (`ray stop` would stop every Ray instance on the machine)."""
    pytest.importorskip("ray", reason="the Ray launcher needs the [ray] extra; CI installs it")
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    port = free_port()
    address, temp = f"127.0.0.1:{port}", f"/tmp/ray-{os.getpid()}-{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 180
        while subprocess.run([ray_bin, "status", "--address", address], capture_output=True, env=env).returncode != 0:
            assert head.poll() is None and time.time() < deadline, "ray start --head failed"
            time.sleep(1)
        yield address, head
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_head():
    with started_ray_head() as (address, _):
        yield address


def test_ray_launcher_runs_the_grid_on_a_ray_instance(tmp_path, cache_dir, ray_head):
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text('methods = ["ppo"]\nsettings = [{}, { "train.device" = "cuda:99" }]\n')
    result = erbench(*sweep_args(grid, out, "--seeds", "1", "--jobs", "2", "--launcher", "ray", "--address", ray_head),
                     cache_dir=cache_dir)
    assert result.returncode == 1, result.stderr
    assert "done 1, skipped 0, failed 1" in result.stdout
    found = records(out)
    [completed] = [r for name, r in found.items() if "default" in name]
    [failed] = [r for name, r in found.items() if "cuda99" in name]
    assert completed["status"] == "completed" and completed["final"]["test"]["reward"] >= 0
    assert failed["status"] == "failed" and "cuda" in failed["error"].lower()
    assert (out / f"{next(n for n in found if 'default' in n)}.log").exists()  # the worker's output came back too


def test_a_ray_sweep_runs_as_many_runs_at_once_as_the_cluster_has_cpus(tmp_path, cache_dir, ray_head):
    """No --jobs: both runs are submitted at once and the head's 2 CPUs run them together (--cpus-per-run 1)."""
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text(GRID)
    args = sweep_args(grid, out, "--seeds", "1", "--launcher", "ray", "--address", ray_head, "--cpus-per-run", "1")
    result = erbench(*args, cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert "done 2, skipped 0, failed 0" in result.stdout and " s preparing assets)" in result.stdout
    first, second = sorted(records(out).values(), key=lambda record: record["started"])
    assert first["status"] == second["status"] == "completed"
    assert second["started"] < first["finished"], (first["started"], first["finished"], second["started"], second["finished"])

    again = erbench(*args, cache_dir=cache_dir)
    assert again.returncode == 0 and "done 0, skipped 2, failed 0" in again.stdout, again.stdout


def test_an_unreachable_ray_address_is_one_line_within_seconds(tmp_path):
    """Nothing listens at the port: one line naming the mend, long before ray.init's minutes of retries, nothing written."""
    pytest.importorskip("ray", reason="the Ray launcher needs the [ray] extra; CI installs it")
    address, out = f"127.0.0.1:{free_port()}", tmp_path / "out"
    started = time.perf_counter()
    result = erbench("sweep", "imdb", "--grid", "paper", "--seeds", "1", "--launcher", "ray", "--address", address,
                     "--out", str(out), cache_dir=tmp_path / "cache", timeout=30)
    assert time.perf_counter() - started < 30
    assert_one_line_error(result, f"cannot reach a Ray cluster at {address}")
    assert "ray start --head" in result.stderr and "ray status" in result.stderr and not result.stdout
    assert not out.exists()


def test_a_ray_head_that_goes_away_mid_sweep_fails_the_runs_in_flight(tmp_path, cache_dir):
    """The head dies (its processes killed, as `ray stop --force` does) while a long run is in flight: the sweep ends
    within a bounded time, the run that came back before stays complete and the one in flight is recorded failed."""
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text('methods = ["ppo"]\nsettings = [{ "train.iterations" = 4 }, { "train.iterations" = 400 }]\n')
    fast = [item for item in FAST if not item.startswith("train.iterations=")]  # a sweep's --set overrides the grid's
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(cache_dir)}
    with started_ray_head() as (address, head):
        sweep = subprocess.Popen([sys.executable, "-m", "erbench.cli", "sweep", "imdb", "--grid", str(grid), "--seeds", "1",
                                  "--scale", "tiny", "--out", str(out), "--data-dir", str(DATA_DIR), *sets(*fast),
                                  "--launcher", "ray", "--address", address],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while not records(out):  # the short run came back; the long one is in flight
            assert sweep.poll() is None and time.time() < deadline, sweep.communicate()
            time.sleep(0.5)
        os.killpg(head.pid, signal.SIGKILL)
        stopped = time.time()
        stdout, stderr = sweep.communicate(timeout=120)
    assert time.time() - stopped < 60 and sweep.returncode == 1, stderr
    assert "done 1, skipped 0, failed 1" in stdout
    found = records(out)
    [completed] = [r for name, r in found.items() if "iterations4-" in name]
    [failed] = [r for name, r in found.items() if "iterations400-" in name]
    assert completed["status"] == "completed"
    assert failed["status"] == "failed" and "Ray" in failed["error"], failed["error"]


@pytest.mark.parametrize("module, args, message", [
    ("ray", ["sweep", "imdb", "--grid", "paper", "--seeds", "1", "--launcher", "ray"], "pip install erbench[ray]"),
    ("trl", ["run", "imdb", "--method", "elastic", "--algo", "grpo"], "pip install erbench[trl]"),
])
def test_a_missing_extra_is_named_in_one_line(tmp_path, module, args, message):
    """Without the optional extra installed (shadowed here by a module that fails to import), one line says what to install."""
    (tmp_path / f"{module}.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "erbench.cli", *args, "--data-dir", str(tmp_path / "no-data")],
                            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "results").exists()  # refused before anything is written


def test_a_sweep_stopped_by_sigterm_stops_its_runs_resumable(tmp_path, cache_dir):
    """What a GPU window's end, `timeout` or preemption sends to the sweep alone: its running job stops too (record
    `interrupted`, checkpoint written) instead of running on, so the next sweep resumes it."""
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text('methods = ["ppo"]\nsettings = [{ "train.iterations" = 400 }]\n')
    env = {**os.environ, "ERBENCH_QUIET": "1", "ERBENCH_CACHE": str(cache_dir)}
    sweep = subprocess.Popen([sys.executable, "-m", "erbench.cli", *sweep_args(grid, out, "--seeds", "1", "--checkpoint-every", "1")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(len(r.get("train_curve", [])) >= 2 for r in records(out).values()):  # a checkpoint has been written
        assert sweep.poll() is None and time.time() < deadline, sweep.communicate()
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)  # to the sweep only, not its process group
    assert sweep.wait(timeout=120) == 130, sweep.communicate()
    [(name, record)] = records(out).items()
    try:
        assert record["status"] == "interrupted" and len(record["train_curve"]) < 400
        assert (cache_dir / "checkpoints" / name / "resume" / "manifest.json").exists()
    finally:
        shutil.rmtree(cache_dir / "checkpoints" / name, ignore_errors=True)  # the shared cache serves other tests


# At --seeds 20, the registered counts: IMDB's elastic and reset-ema 20, ppo at beta0 0.1 and 1.0 20, the three
# decays and the abstract's five other baselines 10, the critic reset 5; translation's six sides 12 and ppo-nokl 5;
# StackLLaMA's two 20; arith's elastic-claim sides 10 and ppo 5.
@pytest.mark.parametrize("task, runs", [("imdb", 2 * 20 + 2 * 20 + 3 * 10 + 5 * 10 + 5), ("translation", 6 * 12 + 5),
                                        ("stackllama", 2 * 20), ("arith", 4 * 10 + 5)])
def test_a_claims_grid_writes_the_paper_grids_records(task, runs):
    """Run first, skipped later: each run of `claims` has the name the paper grid gives the same configuration."""
    from erbench.sweep import expand, load_grid

    def settings(grid: str) -> set[str]:
        return {job.name.rsplit("-seed", 1)[0] for job in expand(task, load_grid(task, grid), "tiny", 20, [])}

    assert len(expand(task, load_grid(task, "claims"), "tiny", 20, [])) == runs
    assert settings("claims") <= settings("paper")


def test_a_portable_sweep_hands_its_code_path_to_every_run(tmp_path, monkeypatch):
    """Runs on a Ray worker inherit the cluster's environment, not the driver's: the launcher settings carry the path."""
    from erbench import cpu, launchers

    def settings():
        return launchers.Settings(tmp_path, None, tmp_path, 0, 1.0, 0.0)

    monkeypatch.delenv(cpu.PORTABLE_ENV, raising=False)
    assert settings().portable is False
    monkeypatch.setenv(cpu.PORTABLE_ENV, "1")
    assert settings().portable is cpu.can_pin()
