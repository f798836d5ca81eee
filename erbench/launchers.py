"""Launchers run a sweep's jobs: each job is one `erbench run` in its own process.

  local  J processes at a time on this machine; with GPUs, the slots are spread over them round-robin
         (several runs share a GPU when J exceeds the GPU count: a tiny or GPT-2-small run uses a small share)
  ray    every job is submitted at once as a Ray task with its CPU/GPU needs, on a cluster (`--address`) or a local
         Ray instance, so the cluster's resources decide how many run together (`--jobs`, when given, caps them);
         the worker returns the record and its samples to the driver, so no shared filesystem is needed for
         records (a tracker's files stay where the worker wrote them: --report-to wandb syncs them itself)

A job resumes from its checkpoint when one exists in the cache folder it runs with.
"""

import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from erbench import cpu
from erbench.errors import ErbenchError


@dataclass
class Outcome:
    """What a launcher reports of one job."""
    name: str
    status: str  # "done" | "failed"
    error: str | None = None
    seconds: float = 0.0
    record: dict | None = None  # returned by launchers whose workers cannot write into the driver's folder
    samples: str | None = None  # likewise, its samples file
    log: str | None = None  # likewise, the run's output


@dataclass(frozen=True)
class Settings:
    out: Path  # the driver's record folder
    data_dir: Path | None
    cache_dir: Path
    checkpoint_every: int
    cpus_per_run: float
    gpus_per_run: float
    report_to: str = "none"  # a tracker (erbench.trackers); its files go to out/<tracker>/
    # The driver's CPU code path, passed as --portable: a Ray worker's environment is the cluster's, not the driver's.
    portable: bool = field(default_factory=cpu.portable)


def last_error_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    return lines[-1] if lines else None


def execute(job, record: Path, settings: Settings, env: dict[str, str] | None = None, running: set | None = None):
    """Run one job to completion in a subprocess; returns its Outcome. Output goes to <record>.log.
    The process is in `running` while it runs, for a driver that must stop it."""
    from erbench import checkpoint

    resume = checkpoint.exists(settings.cache_dir / "checkpoints" / record.stem / "resume")
    command = [sys.executable, "-m", "erbench.cli", *job.run_args(), "--record", str(record),
               "--cache-dir", str(settings.cache_dir), "--checkpoint-every", str(settings.checkpoint_every),
               *(["--data-dir", str(settings.data_dir)] if settings.data_dir else []), *(["--resume"] if resume else []),
               *(["--portable"] if settings.portable else []),
               *(["--report-to", settings.report_to, "--tracker-dir", str(settings.out / settings.report_to)]
                 if settings.report_to != "none" else [])]
    record.parent.mkdir(parents=True, exist_ok=True)
    log = record.with_suffix(".log")
    started = time.perf_counter()
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "ERBENCH_QUIET": "1", **(env or {})})
        if running is not None:
            running.add(process)
        try:
            returncode = process.wait()
        finally:
            if running is not None:
                running.discard(process)
    seconds = time.perf_counter() - started
    if returncode == 0:
        return Outcome(job.name, "done", seconds=seconds)
    reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    error = last_error_line(log.read_text(errors="replace")) or reason
    return Outcome(job.name, "failed", error=f"{error} ({reason}; log: {log})", seconds=seconds)


def local(jobs: list, parallel: int, settings: Settings, finished: Callable, address: str | None = None) -> None:
    """Run `parallel` jobs at a time; each gets CPU threads = cores / parallel and, with GPUs, one of them.
    A driver stopped by Ctrl-C or SIGTERM (a GPU window's end, `timeout`, preemption) stops its running jobs the
    same way, so each records `interrupted` and writes its checkpoint, and the next sweep resumes them."""
    import torch

    gpus = torch.cuda.device_count()
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(parallel):
        slots.put(slot)
    running: set[subprocess.Popen] = set()
    stopping = threading.Event()

    def work(job):
        if stopping.is_set():
            return Outcome(job.name, "failed", error="the sweep was stopped before this run started")
        slot = slots.get()
        try:
            env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            return execute(job, settings.out / f"{job.name}.json", settings, env, running)
        finally:
            slots.put(slot)

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        futures = {pool.submit(work, job): job for job in jobs}
        for future in as_completed(futures):
            finished(futures[future], future.result())
    except BaseException:
        stopping.set()
        for process in list(running):
            process.terminate()  # SIGTERM: the run stops as on Ctrl-C (status interrupted, checkpoint written)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def execute_remote(job, settings: Settings):
    """A Ray task: run the job into a local temporary folder and hand the record (and the log's tail) back."""
    import json

    from erbench.results import samples_path

    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / f"{job.name}.json"
        try:
            outcome = execute(job, record, settings, {"OMP_NUM_THREADS": str(max(1, int(settings.cpus_per_run)))})
        except Exception as e:  # never lose a run's outcome to a worker-side problem
            return Outcome(job.name, "failed", error=f"{type(e).__name__}: {e}")
        if record.exists():
            outcome.record = json.loads(record.read_text())
        samples = samples_path(record)
        outcome.samples = samples.read_text() if samples.exists() else None
        log = record.with_suffix(".log")
        outcome.log = log.read_text(errors="replace") if log.exists() else None
        if outcome.error:
            outcome.error = outcome.error.replace(str(log), str(settings.out / log.name))
        return outcome


def require_ray():
    try:
        import ray as ray_module
    except ImportError:
        raise ErbenchError("the Ray launcher needs Ray", "pip install erbench[ray]") from None
    return ray_module


PROBE_TIMEOUT = 5.0  # seconds a TCP connect to a Ray head may take before the head counts as unreachable
HEAD_CHECK_SECONDS = 5.0  # how often a sweep waiting on its runs checks that the head still answers


def host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of a Ray address `HOST:PORT` or `ray://HOST:PORT`; None for one without a port (`auto`)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
        return True
    except OSError:
        return False


def check_address(address: str | None) -> None:
    """One line when nothing answers at `address`: ray.init would retry (and print each retry) for minutes."""
    target = host_port(address) if address else None
    if target and not reachable(*target):
        raise ErbenchError(f"cannot reach a Ray cluster at {address}",
                           f"start one there with `ray start --head --port {target[1]}`, or check the address with "
                           f"`ray status --address {address}`")


def ray(jobs: list, parallel: int | None, settings: Settings, finished: Callable, address: str | None = None) -> None:
    """Submit every job as a Ray task: the cluster's free CPUs and GPUs decide how many run at once, and `parallel`,
    when given, caps the runs in flight. When the head stops answering, the runs in flight and those not yet
    submitted are reported failed with that reason, instead of waiting on a cluster that is gone."""
    ray_module = require_ray()
    try:
        context = ray_module.init(address=address, log_to_driver=False, include_dashboard=False)
    except Exception as e:
        raise ErbenchError(f"cannot connect to Ray{f' at {address}' if address else ''}: {type(e).__name__}: {e}",
                           "start one with `ray start --head` and pass its address, e.g. --address 127.0.0.1:6379") from None
    head = context.address_info["gcs_address"]
    try:
        # Workers of a cluster started elsewhere do not share this process's environment: hand them the plugin path.
        plugin_path = {"env_vars": {"ERBENCH_PATH": os.environ["ERBENCH_PATH"]}} if os.environ.get("ERBENCH_PATH") else None
        remote = ray_module.remote(execute_remote).options(num_cpus=settings.cpus_per_run, num_gpus=settings.gpus_per_run,
                                                           max_retries=0, runtime_env=plugin_path)
        pending, waiting = {}, list(jobs)
        while waiting or pending:
            while waiting and len(pending) < (parallel or len(jobs)):
                job = waiting.pop(0)
                pending[remote.remote(job, settings)] = job
            try:
                ready, _ = ray_module.wait(list(pending), num_returns=1, timeout=HEAD_CHECK_SECONDS)
                lost = None if ready or reachable(*host_port(head)) else "stopped answering"
            except (ray_module.exceptions.RayError, ConnectionError) as e:
                ready, lost = [], f"failed ({type(e).__name__}: {str(e).splitlines()[0]})"
            if lost:
                for when, lost_jobs in (("while this run was in flight", pending.values()), ("before this run started", waiting)):
                    for job in lost_jobs:
                        finished(job, Outcome(job.name, "failed", error=f"the Ray head at {head} {lost} {when}; "
                                                                        "run the sweep again once it is back"))
                return
            if ready:
                job = pending.pop(ready[0])
                try:
                    outcome = ray_module.get(ready[0])
                except Exception as e:  # the worker or its node died: record the job failed and go on
                    outcome = Outcome(job.name, "failed", error=f"Ray task failed: {type(e).__name__}: {str(e).splitlines()[0]}")
                finished(job, outcome)
    finally:
        ray_module.shutdown()
