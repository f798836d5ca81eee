"""The real command line, end to end at a shrunken tiny scale, and its answers to bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA_DIR, FAST, assert_one_line_error, erbench, erbench_in_process, sets

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "imdb", "--method", "elastic", "--data-dir", str(DATA_DIR)]


def test_help_does_not_import_torch():
    code = "import sys; from erbench.cli import app; import erbench.config, erbench.registry; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_list_names_tasks_methods_and_scales(tmp_path):
    out = erbench("list", cache_dir=tmp_path).stdout
    for name in ("imdb", "translation", "ppo", "ppo-nokl", "reset", "reset-ema", "ema-ref", "elastic", "frozen-english",
                 "--scale tiny", "--scale paper"):
        assert name in out


# Bad input across the commands: one `error:` line, exit 2, before any work (nothing written). {record} is a copy of
# a committed run record, {records} its folder, {broken} a file that is not TOML, {corrupt} a record cut short.
BAD_INPUTS = [
    # run
    (["run", "imdbb", "--method", "elastic"], "unknown task 'imdbb'"),
    (["run", "imdb", "--method", "elastik"], "unknown method 'elastik'"),
    (["run", "imdb", "--method", "frozen-english"], "method 'frozen-english' does not apply to task imdb"),
    (["run", "imdb", "--method", "elastic", "--scale", "huge"], "unknown scale 'huge'"),
    (["run", "imdb", "--method", "elastic", "--seed", "-1"], "--seed -1 is negative"),
    (["run", "imdb", "--method", "elastic", "--set", "train.lrr=1"], "unknown setting 'train.lrr'"),
    (["run", "imdb", "--method", "elastic", "--set", "task.kv_cache=quantized"], "choose one of: dynamic, static"),
    (["run", "imdb", "--method", "elastic", "--set", "nonsense=1"], "unknown setting 'nonsense'"),
    (["run", "imdb", "--method", "elastic", "--set", "train.lr"], "has no '='"),
    (["run", "imdb", "--method", "elastic", "--set", "train.lr=inf"], "train.lr must be a finite number"),
    (["run", "imdb", "--method", "elastic", "--set", "train.lr=nan"], "train.lr must be a finite number"),
    (["run", "imdb", "--method", "elastic", "--set", "method.ema_decay=1.5"], "method.ema_decay must be in [0, 1]"),
    (["run", "imdb", "--method", "elastic", "--set", "method.reset_every=0"], "method.reset_every must be an integer >= 1"),
    (["run", "imdb", "--method", "elastic", "--set", "train.kl_coef=-0.1"], "train.kl_coef must be >= 0"),
    (["run", "imdb", "--method", "elastic", "--set", "train.iterations=two"], "train.iterations takes a int"),
    (["run", "imdb", "--method", "elastic", "--set", "method.kl_reference=ref"], "choose one of: init, ema"),
    (["run", "imdb", "--method", "elastic", "--set", "train.device=tpu"], "train.device must be auto, cpu, cuda or cuda:N"),
    (["run", "imdb", "--method", "elastic", "--set", "task.response_tokens=0"], "task.response_tokens must be an integer >= 1"),
    (["run", "imdb", "--method", "elastic", "--set", "task.prompt_tokens=200"], "task.lm_context must be >= prompt_tokens + response_tokens"),
    (["run", "translation", "--method", "elastic", "--set", "task.part_a=20000"], "parts A and B leave at least 1,000"),
    (["run", "stackllama", "--method", "elastic", "--set", "task.response_max=3"], "task.response_max must be > task.response_min"),
    (["run", "imdb", "--method", "elastic", "--report-to", "neptune"], "unknown tracker 'neptune'"),
    (["run", "imdb", "--method", "elastic", "--data-dir", "/nonexistent"], "IMDB data not found"),
    (["run", "imdb", "--method", "elastic", "--out", "/proc/erbench/runs"], "cannot write run records to /proc/erbench/runs"),
    # prepare
    (["prepare", "imdbb"], "unknown task 'imdbb'"),
    (["prepare", "imdb", "--scale", "huge"], "unknown scale 'huge'"),
    (["prepare", "imdb", "--set", "task.vocab_size=0"], "task.vocab_size must be an integer >= 1"),
    (["prepare", "translation", "--data-dir", "/nonexistent"], "Multi30k train.fr.gz not found"),
    # sweep
    (["sweep", "imdbb", "--grid", "paper"], "unknown task 'imdbb'"),
    (["sweep", "imdb", "--grid", "{broken}"], "cannot read grid file"),
    (["sweep", "imdb", "--grid", "paper", "--seeds", "0"], "--seeds 0"),
    (["sweep", "imdb", "--grid", "paper", "--out", "/proc/erbench/sweep"], "cannot write run records to /proc/erbench/sweep"),
    # plot
    (["plot"], "nothing to plot"),
    (["plot", "--pareto", "--results", "/nonexistent"], "no completed run records under /nonexistent"),
    (["plot", "--pareto", "--task", "nope", "--results", "{records}"], "no records of task 'nope'"),
    (["plot", "--pareto", "--x", "bleu", "--results", "{records}"], "task imdb records have no metric 'bleu'"),
    (["plot", "--curves", "--y", "score", "--results", "{records}"], "task imdb records have no metric 'score'"),
    (["plot", "--pareto", "--out", "{records}/figure.txt", "--results", "{records}"], "give --out a .png, .svg or .pdf file"),
    # report
    (["report", "--results", "/nonexistent"], "no completed run records under /nonexistent"),
    (["report", "--format", "xml", "--results", "{records}"], "unknown format 'xml'"),
    (["report", "--checkpoint", "worst", "--results", "{records}"], "unknown checkpoint 'worst'"),
    (["report", "--drift-budget", "-1", "--results", "{records}"], "--drift-budget -1.0"),
    (["report", "--claims", "--claims-file", "{broken}", "--results", "{records}"], "cannot read claims from"),
    (["report", "--write", "--verify", "--results", "{records}"], "--write and --verify together"),
    # check
    (["check", "--reference", "/nonexistent"], "cannot read /nonexistent/grid.toml"),
    (["check", "--fresh", "/nonexistent"], "no record /nonexistent/"),
    # interpolate
    (["interpolate", "/nonexistent.json"], "cannot read run record /nonexistent.json"),
    (["interpolate", "{corrupt}"], "cannot read run record"),
    (["interpolate", "{record}", "--alphas", "0.5,2"], "invalid --alphas"),
    # samples
    (["samples", "/nonexistent.json"], "cannot read run record /nonexistent.json"),
    (["samples", "{corrupt}"], "cannot read run record"),
    (["samples", "{record}", "--split", "train"], "unknown split 'train'"),
    # config
    (["config", "imdb", "--method", "elastik"], "unknown method 'elastik'"),
    (["config", "imdb", "--method", "elastic", "--set", "train.lr=-1"], "train.lr must be > 0"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(args) for args, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    records = tmp_path / "records"
    records.mkdir()
    committed = REPO / "results" / "sweeps" / "imdb-paper-tiny" / "imdb-elastic-tiny-default-seed0.json"
    (records / committed.name).write_text(committed.read_text())
    (tmp_path / "broken.toml").write_text("not [toml")
    (tmp_path / "corrupt.json").write_text(committed.read_text()[:100])
    places = {"{record}": str(records / committed.name), "{records}": str(records), "{broken}": str(tmp_path / "broken.toml"),
              "{corrupt}": str(tmp_path / "corrupt.json")}
    for key, value in places.items():
        args = [arg.replace(key, value) for arg in args]
    result = erbench_in_process(*args, cache_dir=tmp_path / "cache")
    assert_one_line_error(result, message)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["broken.toml", "corrupt.json", f"records/{committed.name}"]  # no record, asset or figure


def test_the_bad_input_table_spans_every_command():
    assert len(BAD_INPUTS) >= 40
    assert {args[0] for args, _ in BAD_INPUTS} >= {"run", "prepare", "sweep", "plot", "report", "check", "interpolate", "samples"}


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
    assert record["precision"] == {"dtype": "float32", "autocast": None, "gradient_checkpointing": False,
                                   "float32_matmul_precision": "highest"}
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
