"""Native code paths by default; one portable floating-point path, the same on every x86-64 CPU, where exactness
across CPUs is the point (`erbench check`, `--portable`, ERBENCH_PORTABLE_CPU=1).

torch (MKL BLAS and ATen's vectorised kernels), numpy (its SIMD ufunc loops, which scikit-learn's reward
training runs on) and OpenBLAS each pick kernels for the CPU at hand; kernels of different vector widths
add in different orders, so the last bits differ, and RL training amplifies last bits into different
trajectories. Measured on this project's references (docs/reproducibility.md): numpy's AVX-512 loops
against its AVX2 loops move the IMDB TF-IDF reward's test accuracy from 0.90268 to 0.9034, and a 1e-5
difference in the translation listener's first reward ends six PPO iterations later at KL 6.6 or 10.1.

The portable path costs the PPO update about half its speed (MKL's COMPATIBLE branch is SSE2), so it is not
the default: runs are statistics over seeds, and only the regression check needs the last bits to agree
across CPU makers. `pin()` runs at `import erbench`, before torch or numpy are loaded, and with
ERBENCH_PORTABLE_CPU=1 sets each library's own switch to a path every x86-64-v3 (AVX2) CPU runs
identically; `use_portable()` does the same for a command that chooses it (a variable the user has set wins)."""

import os
import platform
import sys

from erbench.errors import ErbenchError

PORTABLE_ENV = "ERBENCH_PORTABLE_CPU"  # "1": the portable path, in this process and in the runs it starts

PINNED = {
    # MKL (torch's BLAS): on non-Intel CPUs MKL honours only AUTO and COMPATIBLE, and AUTO dispatches by CPU;
    # COMPATIBLE (SSE2, no approximate reciprocals) is the one branch that gives the same bits on both makers.
    "MKL_CBWR": "COMPATIBLE",
    # ATen's own kernels (softmax, GRU cells, reductions): AVX2 even where AVX-512 exists.
    "ATEN_CPU_CAPABILITY": "avx2",
    # oneDNN, which torch uses for some CPU ops.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # numpy's runtime-dispatched loops: no AVX-512 targets (the names of numpy 1.x and 2.x; unknown ones are ignored).
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    # OpenBLAS (numpy and scipy): its Haswell (AVX2) kernels on every CPU.
    "OPENBLAS_CORETYPE": "Haswell",
}
MKL_BRANCHES = {0: "OFF", 1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2",
                9: "AVX", 10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}


def has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


def can_pin() -> bool:
    """On CPUs without AVX2 nothing is pinned: forcing AVX2 kernels there would crash OpenBLAS, and such CPUs
    cannot share the references' path anyway."""
    return platform.machine() in ("x86_64", "AMD64") and has_avx2()


def portable() -> bool:
    """Whether this process runs the portable path."""
    return os.environ.get(PORTABLE_ENV) == "1" and can_pin()


def pin() -> None:
    """Pin the code paths when ERBENCH_PORTABLE_CPU=1 (see the module doc)."""
    if portable():
        for key, value in PINNED.items():
            os.environ.setdefault(key, value)


def use_portable() -> None:
    """Switch this process, and the processes it starts, to the portable path. The libraries read their switches
    when they load, so this must come before torch or numpy are imported."""
    if portable():
        return
    loaded = [name for name in ("torch", "numpy") if name in sys.modules]
    if loaded:
        raise ErbenchError(f"the portable CPU code path was asked for after {' and '.join(loaded)} loaded",
                           f"set {PORTABLE_ENV}=1 in the environment instead")
    os.environ[PORTABLE_ENV] = "1"
    pin()


def code_paths() -> dict:
    """What is in force in this process, for run records: the switches and what each library reports."""
    import torch

    paths = {"portable": portable(), **{key: os.environ.get(key) for key in PINNED}}
    paths["aten_capability"] = torch.backends.cpu.get_cpu_capability()
    paths["mkl_cbwr_branch"] = mkl_branch(torch)
    try:
        from threadpoolctl import threadpool_info

        paths["openblas"] = sorted({info.get("architecture") or "?" for info in threadpool_info()
                                    if info.get("internal_api") == "openblas"})
    except ImportError:
        pass
    return paths


def mkl_branch(torch) -> str | None:
    """The MKL conditional-reproducibility branch torch's MKL runs, asked of MKL itself (None without MKL)."""
    import ctypes

    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        branch = lib.mkl_serv_cbwr_get(1)  # MKL_CBWR_BRANCH
    except (OSError, AttributeError):
        return None
    return MKL_BRANCHES.get(branch, str(branch))
