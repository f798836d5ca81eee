"""Bring your own method or task: recipes as the registry, --include-path / ERBENCH_PATH, entry points, the
method API (ref-reset and the example plugin are written only through it), recipes as strict as --set."""

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import FAST, assert_one_line_error, erbench, sets
from erbench.errors import ErbenchError
from erbench.methods.base import frozen_copy
from erbench.methods.ref_reset import ReferenceMix, ReferenceMixConfig, ReferenceReset, ReferenceResetConfig
from erbench.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin" / "erbench_example_plugin"


def registry_with(tmp_path: Path, **files: str):
    """The registry with a user folder holding these recipe files ({stem: text})."""
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    for stem, text in files.items():
        (folder / f"{stem}.toml").write_text(text)
    return load_registry(str(folder))


GOOD_TASK = '[task]\ntarget = "m:T"\n[scales.tiny.train]\nlr = 1e-5\n'


@pytest.mark.parametrize("files, message", [
    ({"t": GOOD_TASK + "[scales.tiny.trian]\nlr = 1\n"}, "unknown key 'trian' in [scales.tiny]"),
    ({"t": GOOD_TASK + "[methods.elastik.method]\nema_decay = 0.9\n"}, "[methods.elastik] in"),
    ({"t": GOOD_TASK + "[scales.tiny.methods.elastik.train]\nlr = 1\n"}, "names unknown method 'elastik'"),
    ({"t": GOOD_TASK + "[scale.tiny]\n"}, "unknown key 'scale' in the top level"),
    ({"t": "[scales.tiny.train]\nlr = 1\n"}, "has [scales] but declares no [task]"),
    ({"t": '[task]\ndescription = "no target"\n'}, "has no target"),
    ({"t": '[task]\ntarget = "m:T"\ndrift = {}\n'}, "unknown key 'drift' in [task]"),
    ({"m": '[method.x]\nhook = "m:H"\n'}, "[method.x] of"),
    ({"m": '[method.x]\nhook = "m:H"\nconfig = "m:C"\npreset = { trian = { lr = 1 } }\n'}, "unknown key 'trian' in [method.x.preset]"),
    ({"m": '[method.elastic]\nhook = "m:H"\nconfig = "m:C"\n'}, "method 'elastic' is defined twice"),
    ({"imdb": GOOD_TASK}, "task 'imdb' is defined twice"),
    ({"t": "[task\n"}, "cannot read recipe"),
])
def test_recipe_mistakes_are_one_line_errors_naming_the_file(tmp_path, files, message):
    with pytest.raises(ErbenchError, match=None) as error:
        registry_with(tmp_path, **files)
    assert message in str(error.value) and str(tmp_path / "recipes") in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


def test_a_name_defined_twice_names_both_sources(tmp_path):
    with pytest.raises(ErbenchError) as error:
        registry_with(tmp_path, m='[method.ppo]\nhook = "m:H"\nconfig = "m:C"\n')
    assert "tasks/methods.toml" in str(error.value) and str(tmp_path / "recipes" / "m.toml") in str(error.value)


@pytest.mark.parametrize("sets_, message", [
    (["train.iterations=true"], "train.iterations takes a int"),
    (["train.lr=inf"], "must be a finite number"),
    (["train.kl_coef=nan"], "must be a finite number"),
    (["method.ema_decay=0.9"], "unknown setting 'method.ema_decay' from --set"),  # ref-reset keeps no EMA
])
def test_settings_are_typed_finite_and_the_methods_own(sets_, message):
    from erbench.config import resolve

    with pytest.raises(ErbenchError, match=None) as error:
        resolve("imdb", "tiny", "ref-reset", 0, sets_)
    assert message in str(error.value)


@pytest.mark.parametrize("line, message", [
    ("iterations = true", "train.iterations takes a int, not true/false"),
    ("lr = inf", "train.lr must be a finite number"),
    ("lrr = 1e-5", "unknown setting 'train.lrr' from scale tiny"),
])
def test_recipe_values_are_as_strict_as_set(tmp_path, monkeypatch, line, message):
    from erbench.config import resolve

    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "mine.toml").write_text(f'[task]\ntarget = "erbench.tasks.imdb:ImdbTask"\n[scales.tiny.train]\n{line}\n')
    monkeypatch.setenv("ERBENCH_PATH", str(folder))
    with pytest.raises(ErbenchError) as error:
        resolve("mine", "tiny", "ppo", 0, [])
    assert message in str(error.value)
    if "unknown" in message:
        assert str(folder / "mine.toml") in str(error.value)


def test_config_shows_where_each_value_comes_from(tmp_path):
    result = erbench("config", "imdb", "-m", "elastic", "--set", "train.lr=2e-5", cache_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split("=")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["train.lr"].endswith("# --set") and "2e-05" in lines["train.lr"]
    assert "scale tiny" in lines["method.reset_every"] and "tasks/imdb.toml" in lines["method.reset_every"]
    assert "method preset elastic" in lines["method.reset_ema"] and "tasks/methods.toml" in lines["method.reset_ema"]
    assert lines["train.gamma"].endswith("# default")


def test_capabilities_decide_which_methods_apply(tmp_path):
    reg = load_registry("")
    assert "nlpo" in reg.methods_for("imdb") and "nlpo" not in reg.methods_for("translation")
    assert "frozen-english" in reg.methods_for("translation") and "frozen-english" not in reg.methods_for("imdb")
    assert all("ref-reset" in reg.methods_for(task) for task in ("imdb", "translation", "stackllama"))
    assert_one_line_error(erbench("run", "translation", "-m", "nlpo", cache_dir=tmp_path), "needs a task with causal-lm")


def test_reference_reset_moves_the_kl_anchor_not_the_policy():
    torch.manual_seed(0)
    policy, critic = nn.Linear(3, 3), nn.Linear(3, 1)
    init_model = frozen_copy(policy)
    optimizer = torch.optim.AdamW([*policy.parameters(), *critic.parameters()], lr=0.1)
    hook = ReferenceReset(ReferenceResetConfig(reset_every=3), policy, init_model, critic, optimizer)
    assert torch.equal(hook.reference_model.weight, init_model.weight) and hook.reference_model is not init_model
    resets = []
    for done in range(1, 8):
        with torch.no_grad():
            policy.weight.add_(1.0)  # an update
        before = policy.weight.clone()
        assert hook.maybe_reset(done) is False  # the policy never resets
        assert torch.equal(policy.weight, before)
        if torch.equal(hook.reference_model.weight, policy.weight):
            resets.append(done)
    assert resets == [3, 6] == hook.reference_resets
    assert torch.equal(init_model.weight, frozen_copy(init_model).weight)  # theta0 untouched: KL to init stays honest
    state = hook.state_dict()
    fresh = ReferenceReset(ReferenceResetConfig(reset_every=3), policy, init_model, critic, optimizer)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.reference_model.weight, hook.reference_model.weight) and fresh.reference_resets == [3, 6]


def test_reference_mix_moves_the_anchor_part_of_the_way_every_tau_iterations():
    """TR-DPO's soft update: every tau iterations reference <- alpha * policy + (1 - alpha) * reference."""
    torch.manual_seed(0)
    policy, critic = nn.Linear(3, 3), nn.Linear(3, 1)
    init_model = frozen_copy(policy)
    optimizer = torch.optim.AdamW([*policy.parameters(), *critic.parameters()], lr=0.1)
    hook = ReferenceMix(ReferenceMixConfig(reset_every=2, mix_alpha=0.25), policy, init_model, critic, optimizer)
    expected = init_model.weight.clone()
    for done in range(1, 7):
        with torch.no_grad():
            policy.weight.add_(float(done))  # an update
        before = policy.weight.clone()
        assert hook.maybe_reset(done) is False and torch.equal(policy.weight, before)  # the policy never resets
        if done % 2 == 0:
            expected = 0.25 * policy.weight.detach() + 0.75 * expected
        torch.testing.assert_close(hook.reference_model.weight, expected)
    assert hook.reference_resets == [2, 4, 6] and hook.reference_model is not init_model
    assert torch.equal(init_model.weight, frozen_copy(init_model).weight)  # theta0 untouched
    assert not torch.equal(hook.reference_model.weight, policy.weight)  # alpha < 1: not ref-reset
    fresh = ReferenceMix(ReferenceMixConfig(reset_every=2, mix_alpha=0.25), policy, init_model, critic, optimizer)
    fresh.load_state_dict(hook.state_dict())
    assert torch.equal(fresh.reference_model.weight, hook.reference_model.weight)
    with pytest.raises(ErbenchError, match="method.mix_alpha must be in"):
        ReferenceMixConfig(mix_alpha=0.0)
    reg = load_registry("")
    assert all("ref-mix" in reg.methods_for(task) for task in ("imdb", "stackllama", "arith"))


def test_every_package_folder_reaches_the_wheel_with_the_recipes(tmp_path):
    """pyproject lists the packages (the recipes map tasks/ -> erbench.recipes): a new subpackage must be listed."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("erbench-*.whl"))).namelist()
    expected = {f"erbench/{p.relative_to(ROOT / 'erbench').as_posix()}" for p in (ROOT / "erbench").rglob("*.py")}
    assert expected <= set(names), sorted(expected - set(names))
    assert {f"erbench/recipes/{p.name}" for p in (ROOT / "tasks").glob("*.toml")} <= set(names)


def plugin_run(tmp_path, cache_dir, *extra):
    out = tmp_path / "runs"
    result = erbench("run", "imdb-lexicon", "--method", "soft-reset", "--data-dir", str(ROOT.parent / "shared" / "data"),
                     *sets(*FAST, "method.strength=0.5"), "--out", str(out), *extra, cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["status"] == "completed" and record["task"] == "imdb-lexicon" and record["method"] == "soft-reset"
    assert record["resets"] == [2, 4] and record["method_config"]["strength"] == 0.5
    assert 0 <= record["final"]["val"]["reward"] <= 1 and record["final"]["val"]["perplexity"] > 1
    return record


def test_a_plugin_folder_runs_through_include_path(tmp_path, cache_dir):
    installed = load_registry("").tasks.get("imdb-lexicon")
    if installed is not None and Path(installed.source).parent != PLUGIN:
        pytest.skip("a non-editable install of the example plugin would define imdb-lexicon twice")
    plugin_run(tmp_path, cache_dir, "--include-path", str(PLUGIN))


def test_an_installed_plugin_runs_through_its_entry_points(tmp_path, cache_dir):
    try:
        metadata.distribution("erbench-example-plugin")
    except metadata.PackageNotFoundError:
        pytest.skip("the example plugin is not installed (pip install -e examples/plugin; .ci/run does)")
    plugin_run(tmp_path, cache_dir)


def test_a_plugin_sweeps_in_worker_processes_and_reports(tmp_path, cache_dir):
    """The sweep's runs are new processes: they find the plugin through the inherited ERBENCH_PATH."""
    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text('methods = ["soft-reset", "ppo"]\n')
    result = erbench("sweep", "imdb-lexicon", "--grid", str(grid), "--seeds", "1", "--jobs", "2", "--out", str(out),
                     "--include-path", str(PLUGIN), "--data-dir", str(ROOT.parent / "shared" / "data"), *sets(*FAST),
                     cache_dir=cache_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done 2, skipped 0, failed 0" in result.stdout
    report = erbench("report", "--results", str(out), "--format", "csv", "--include-path", str(PLUGIN), cache_dir=cache_dir)
    assert report.returncode == 0, report.stderr
    rows = [line for line in report.stdout.splitlines() if line.startswith("imdb-lexicon,")]
    assert {row.split(",")[2] for row in rows} == {"soft-reset", "ppo"}, report.stdout
