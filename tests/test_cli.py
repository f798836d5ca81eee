"""The real command line, end to end at a shrunken tiny scale, and its answers to bad input."""

import json
import math
import subprocess
import sys

import pytest

from conftest import DATA_DIR, FAST, assert_one_line_error, erbench, erbench_in_process, sets

RUN = ["run", "imdb", "--method", "elastic", "--data-dir", str(DATA_DIR)]


def test_help_does_not_import_torch():
    code = "import sys; from erbench.cli import app; import erbench.config, erbench.registry; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_list_names_tasks_methods_and_scales(tmp_path):
    out = erbench("list", cache_dir=tmp_path).stdout
    for name in ("imdb", "translation", "ppo", "ppo-nokl", "reset", "reset-ema", "ema-ref", "elastic", "frozen-english",
                 "--scale tiny", "--scale paper"):
        assert name in out


@pytest.mark.parametrize("args, message", [
    (["run", "imdbb", "--method", "elastic"], "unknown task 'imdbb'"),
    (["run", "imdb", "--method", "elastik"], "unknown method 'elastik'"),
    (["run", "imdb", "--method", "elastic", "--scale", "huge"], "unknown scale 'huge'"),
    (["run", "imdb", "--method", "elastic", "--set", "train.lrr=1"], "unknown setting 'train.lrr'"),
    (["run", "imdb", "--method", "elastic", "--set", "nonsense=1"], "unknown setting 'nonsense'"),
    (["run", "imdb", "--method", "elastic", "--set", "train.lr"], "has no '='"),
    (["run", "imdb", "--method", "elastic", "--set", "method.ema_decay=1.5"], "method.ema_decay must be in [0, 1]"),
    (["run", "imdb", "--method", "elastic", "--set", "method.reset_every=0"], "method.reset_every must be an integer >= 1"),
    (["run", "imdb", "--method", "elastic", "--set", "train.kl_coef=-0.1"], "train.kl_coef must be >= 0"),
    (["run", "imdb", "--method", "elastic", "--set", "train.iterations=two"], "train.iterations takes a int"),
    (["run", "imdb", "--method", "elastic", "--set", "method.kl_reference=ref"], "choose one of: init, ema"),
    (["run", "imdb", "--method", "elastic", "--data-dir", "/nonexistent"], "IMDB data not found"),
    (["run", "imdb", "--method", "elastic", "--out", "/proc/erbench/runs"], "cannot write run records to /proc/erbench/runs"),
    (["sweep", "imdb", "--grid", "paper", "--out", "/proc/erbench/sweep"], "cannot write run records to /proc/erbench/sweep"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = erbench_in_process(*args, cache_dir=tmp_path)
    assert_one_line_error(result, message)
    assert not (tmp_path / "results").exists()


def run_record(folder, cache_dir, *extra: str) -> dict:
    out = folder / "runs"
    result = erbench(*RUN, "--out", str(out), *sets(*FAST, *extra), cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert "val  reward" in result.stdout and "test reward" in result.stdout
    [path] = out.glob("*.json")
    assert not list(out.glob(".*.tmp"))  # no half-written leftovers
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def elastic_record(tmp_path_factory, cache_dir) -> dict:
    return run_record(tmp_path_factory.mktemp("elastic"), cache_dir)


def test_run_writes_a_complete_record(elastic_record):
    record = elastic_record
    assert record["schema"] == "erbench.run/1" and record["status"] == "completed"
    assert record["method_config"]["reset_every"] == 2 and record["method_config"]["kl_reference"] == "ema"
    assert record["resets"] == [2, 4]  # after every 2 of the 4 iterations
    assert [point["iteration"] for point in record["eval_curve"]] == [0, 2, 4]
    assert [point["resets_so_far"] for point in record["eval_curve"]] == [0, 1, 2]
    assert len(record["train_curve"]) == 4
    for split in ("val", "test"):
        for key in ("reward", "reward_gold", "perplexity", "kl_to_init", "kl_to_init_sampled", "distinct_1", "distinct_2"):
            assert math.isfinite(record["final"][split][key]), (split, key)
        assert 0 <= record["final"][split]["reward"] <= 1 and record["final"][split]["kl_to_init"] >= 0
    initial = record["eval_curve"][0]
    assert initial["kl_to_init"] == pytest.approx(0, abs=1e-6)  # the initial policy is theta0
    assert record["environment"]["torch"] and record["timings"]["total_seconds"] > 0
    assert record["assets"]["reward_test_accuracy"] > 0.8
    assert record["assets"]["gold_reward_test_accuracy"] > 0.8 and 0 <= record["final"]["val"]["reward_gold"] <= 1
    assert all("reward_gold" in point for point in record["eval_curve"])


def test_paper_reset_schedule_through_the_cli(tmp_path, cache_dir):
    record = run_record(tmp_path, cache_dir, "method.first_reset_after=1")
    assert record["resets"] == [1, 3]


def test_the_gold_reward_only_observes(tmp_path, cache_dir, elastic_record):
    """Scoring with the gold classifier changes nothing else a run does (no random numbers, no training signal)."""
    record = run_record(tmp_path, cache_dir, "task.gold_reward=none")
    assert "reward_gold" not in record["final"]["val"]
    without_gold = [{k: v for k, v in point.items() if k != "reward_gold"} for point in elastic_record["eval_curve"]]
    assert record["eval_curve"] == without_gold and record["train_curve"] == elastic_record["train_curve"]


def test_same_seed_gives_identical_metrics(tmp_path, cache_dir, elastic_record):
    first, second = elastic_record, run_record(tmp_path, cache_dir)
    assert first["eval_curve"] == second["eval_curve"]
    assert first["final"] == second["final"]
    assert first["train_curve"] == second["train_curve"]
