"""The regression check holds on any x86-64 CPU: erbench pins one code path, and the real check catches a real change."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA_DIR, erbench
from erbench import cpu
from erbench.errors import ErbenchError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
PROBE = ("import json, erbench, torch; from erbench.cpu import code_paths; torch.ones(4, 4) @ torch.ones(4, 4); "
         "print(json.dumps(code_paths()))")


def code_paths_of_a_fresh_process(*args: str, **env: str) -> dict:
    """The code paths in force after `import erbench` (and `args`, a command line's switches) in a new process."""
    clean = {k: v for k, v in os.environ.items() if k not in cpu.PINNED and k != cpu.PORTABLE_ENV}
    probe = PROBE if not args else ("import sys; from erbench import cli; sys.argv = ['erbench', *" + repr(list(args)) +
                                    "]; cli.code_path('--portable' in sys.argv); " + PROBE)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**clean, **env}, check=True)
    return json.loads(out.stdout)


def test_native_code_paths_are_the_default():
    paths = code_paths_of_a_fresh_process()
    assert paths["portable"] is False and paths["MKL_CBWR"] is None and paths["ATEN_CPU_CAPABILITY"] is None
    assert paths["mkl_cbwr_branch"] in (None, "OFF", "AUTO")  # MKL's own dispatch


@pytest.mark.skipif(not cpu.has_avx2(), reason="erbench pins code paths only on AVX2 CPUs")
@pytest.mark.parametrize("how", ["environment", "--portable"])
def test_the_portable_path_pins_torch_and_numpy_then_run(how):
    paths = code_paths_of_a_fresh_process(**{cpu.PORTABLE_ENV: "1"}) if how == "environment" else \
        code_paths_of_a_fresh_process("run", "imdb", "--portable")
    assert paths["portable"] is True
    assert paths["aten_capability"] == "AVX2"
    assert paths["mkl_cbwr_branch"] == "COMPATIBLE"
    assert paths["openblas"] == ["Haswell"]
    assert paths["NPY_DISABLE_CPU_FEATURES"] == cpu.PINNED["NPY_DISABLE_CPU_FEATURES"]


@pytest.mark.skipif(not cpu.has_avx2(), reason="erbench pins code paths only on AVX2 CPUs")
def test_a_users_own_setting_wins_on_the_portable_path():
    assert code_paths_of_a_fresh_process(MKL_CBWR="AUTO", **{cpu.PORTABLE_ENV: "1"})["mkl_cbwr_branch"] == "AUTO"


def test_the_portable_path_cannot_be_chosen_after_torch_loaded():
    """In a process that already runs torch's native kernels, switching would be a lie: one line instead."""
    import torch  # noqa: F401  (loaded, as in this test process)

    with pytest.raises(ErbenchError, match=f"set {cpu.PORTABLE_ENV}=1 in the environment"):
        cpu.use_portable()
    assert os.environ.get(cpu.PORTABLE_ENV) != "1"


def test_portable_assets_live_apart_from_native_ones(tmp_path, monkeypatch):
    from erbench.runner import make_task, resolve_run

    cfg = resolve_run("imdb", "ppo", "tiny", 0, [])
    native = make_task(cfg, None, tmp_path).asset_dir
    monkeypatch.setenv(cpu.PORTABLE_ENV, "1")
    portable = make_task(cfg, None, tmp_path).asset_dir
    assert native.parent == portable.parent and (native != portable) == cpu.can_pin()


def test_check_refuses_an_unknown_run(tmp_path):
    out = erbench("check", "--run", "imdb-tiny-nope-seed0", cache_dir=tmp_path)
    assert out.returncode == 2 and "no run imdb-tiny-nope-seed0 in the reference grid" in out.stderr


@pytest.mark.e2e
def test_the_reference_check_passes_and_catches_a_changed_kl_coefficient(tmp_path):
    """The committed reference run reproduces within its measured tolerances; the KL coefficient 0.5 instead of
    0.001 fails the same check (KL and perplexity move ~4x their tolerance). An EMA decay of 0.9 instead of
    0.995 is not caught in the grid's 6 iterations (measured on 2026-12-02)."""
    common = ("check", "--run", "imdb-tiny-elastic-seed0", "--reference", str(REFERENCE), "--data-dir", str(DATA_DIR))
    same = erbench(*common, "--keep", str(tmp_path / "fresh"), cache_dir=tmp_path)
    assert same.returncode == 0 and "0 failed" in same.stdout, same.stdout + same.stderr
    fresh = json.loads((tmp_path / "fresh" / "imdb-tiny-elastic-seed0.json").read_text())
    assert fresh["environment"]["cpu_code_paths"]["portable"] == cpu.can_pin()  # the references' path, not the default
    changed = erbench(*common, "--set", "train.kl_coef=0.5", cache_dir=tmp_path)
    assert changed.returncode == 1 and "REGRESSION" in changed.stdout, changed.stdout + changed.stderr
