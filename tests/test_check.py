"""The regression check holds on any x86-64 CPU: erbench pins one code path, and the real check catches a real change."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA_DIR, erbench
from erbench import cpu

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
PROBE = ("import json, erbench, torch; from erbench.cpu import code_paths; torch.ones(4, 4) @ torch.ones(4, 4); "
         "print(json.dumps(code_paths()))")


def code_paths_of_a_fresh_process(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in cpu.PINNED and k != "ERBENCH_NATIVE_CPU"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env}, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not cpu.has_avx2(), reason="erbench pins code paths only on AVX2 CPUs")
def test_import_pins_the_code_paths_torch_and_numpy_then_run():
    paths = code_paths_of_a_fresh_process()
    assert paths["aten_capability"] == "AVX2"
    assert paths["mkl_cbwr_branch"] == "COMPATIBLE"
    assert paths["openblas"] == ["Haswell"]
    assert paths["NPY_DISABLE_CPU_FEATURES"] == cpu.PINNED["NPY_DISABLE_CPU_FEATURES"]


@pytest.mark.skipif(not cpu.has_avx2(), reason="erbench pins code paths only on AVX2 CPUs")
def test_a_users_own_setting_wins_and_native_keeps_the_cpus_paths():
    assert code_paths_of_a_fresh_process(MKL_CBWR="AUTO")["mkl_cbwr_branch"] == "AUTO"
    native = code_paths_of_a_fresh_process(ERBENCH_NATIVE_CPU="1")
    assert native["mkl_cbwr_branch"] == "OFF" and native["MKL_CBWR"] is None


def test_check_refuses_an_unknown_run(tmp_path):
    out = erbench("check", "--run", "imdb-tiny-nope-seed0", cache_dir=tmp_path)
    assert out.returncode == 2 and "no run imdb-tiny-nope-seed0 in the reference grid" in out.stderr


@pytest.mark.e2e
def test_the_reference_check_passes_and_catches_a_changed_kl_coefficient(tmp_path):
    """The committed reference run reproduces within its measured tolerances; the KL coefficient 0.5 instead of
    0.001 fails the same check (KL and perplexity move ~4x their tolerance). An EMA decay of 0.9 instead of
    0.995 is not caught in the grid's 6 iterations (measured on 2026-12-02)."""
    common = ("check", "--run", "imdb-tiny-elastic-seed0", "--reference", str(REFERENCE), "--data-dir", str(DATA_DIR))
    same = erbench(*common, cache_dir=tmp_path)
    assert same.returncode == 0 and "0 failed" in same.stdout, same.stdout + same.stderr
    changed = erbench(*common, "--set", "train.kl_coef=0.5", cache_dir=tmp_path)
    assert changed.returncode == 1 and "REGRESSION" in changed.stdout, changed.stdout + changed.stderr
