"""Evaluation samples beside every record, `erbench samples`, the report's drift examples, and --report-to."""

import json

import pytest
from conftest import DATA_DIR, FAST, assert_one_line_error, erbench, erbench_in_process, sets

RUN = ["run", "imdb", "--data-dir", str(DATA_DIR), *sets(*FAST)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    """A ppo run logged to TensorBoard and an elastic run with its EMA evaluated, in one folder."""
    out = tmp_path_factory.mktemp("samples") / "runs"
    for args in (["--method", "ppo", "--report-to", "tensorboard"], ["--method", "elastic", "--eval-ema"]):
        result = erbench(*RUN, *args, "--out", str(out), cache_dir=cache_dir)
        assert result.returncode == 0, result.stderr
    paths = {json.loads(p.read_text())["method"]: p for p in out.glob("*.json")}
    return out, paths


def read_samples(record_path):
    record = json.loads(record_path.read_text())
    return record, [json.loads(line) for line in (record_path.parent / record["samples_file"]).read_text().splitlines()]


def test_every_evaluation_samples_the_same_prompts(runs):
    _, paths = runs
    record, samples = read_samples(paths["elastic"])
    keys = {(s["split"], s["model"], s["iteration"]) for s in samples}
    assert keys == {("val", model, k) for model in ("policy", "ema") for k in (0, 2, 4)} | {("test", "policy", 4)}
    for split, model, iteration in keys:
        group = sorted((s for s in samples if (s["split"], s["model"], s["iteration"]) == (split, model, iteration)),
                       key=lambda s: s["index"])
        assert [s["index"] for s in group] == list(range(8))  # train.eval_samples defaults to 8
        assert all(s["response"] and 0 <= s["reward"] <= 1 and 0 <= s["reward_gold"] <= 1 for s in group)
        same = [s["prompt"] for s in samples if (s["split"], s["index"]) == (split, 0)]
        assert len(set(same)) == 1  # one prompt per index, at every step and for both models
        # FAST evaluates 8 prompts: the samples are the whole evaluation, so they average to its metrics
        curve = record["eval_curve" if model == "policy" else "ema_eval_curve"]
        metrics = next(p for p in curve if p["iteration"] == iteration) if split == "val" else record["final"]["test"]
        assert sum(s["reward"] for s in group) / 8 == pytest.approx(metrics["reward"], abs=1e-6)
        assert sum(s["kl_to_init"] for s in group) / 8 == pytest.approx(metrics["kl_to_init"], abs=1e-6)
    assert all(s["kl_to_init"] == pytest.approx(0, abs=1e-6) for s in samples if s["iteration"] == 0)


def test_samples_command_puts_initial_and_each_run_side_by_side(runs, tmp_path):
    out, paths = runs
    result = erbench("samples", str(paths["ppo"]), str(paths["elastic"]), "--format", "md", "-n", "2", cache_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    _, samples = read_samples(paths["ppo"])
    first = next(s for s in samples if (s["split"], s["iteration"], s["index"]) == ("val", 0, 0))
    final = next(s for s in samples if (s["split"], s["iteration"], s["index"]) == ("val", 4, 0))
    assert result.stdout.count("**Prompt") == 2 and first["prompt"].strip() in result.stdout
    for row in (f"| initial | {first['response']} |", f"| ppo seed0 @ 4 | {final['response']} |", "| elastic seed0 @ 4 |"):
        assert row in result.stdout
    test = erbench("samples", str(paths["ppo"]), "--split", "test", cache_dir=tmp_path)  # the rich table
    assert test.returncode == 0 and "ppo seed0 (test)" in test.stdout and "initial" not in test.stdout

    bare = tmp_path / "bare.json"  # a record written before samples existed
    bare.write_text(json.dumps({k: v for k, v in json.loads(paths["ppo"].read_text()).items() if k != "samples_file"}))
    for args, message in [([str(paths["ppo"]), "--iteration", "3"], "no val samples at iteration 3 (iterations 0, 2, 4"),
                          ([str(bare)], "has no samples"), ([str(paths["ppo"]), "--split", "train"], "unknown split"),
                          ([str(out / "missing.json")], "cannot read run record")]:
        assert_one_line_error(erbench_in_process("samples", *args, cache_dir=tmp_path), message)


def test_report_shows_what_drift_looks_like(runs, tmp_path):
    out, paths = runs
    result = erbench("report", "--results", str(out), cache_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    _, samples = read_samples(paths["elastic"])
    final = next(s for s in samples if (s["split"], s["model"], s["iteration"], s["index"]) == ("val", "policy", 4, 0))
    assert "### What drift looks like" in result.stdout and f"| elastic seed0 @ 4 | {final['response']} |" in result.stdout


def test_report_to_tensorboard_logs_curves_evaluations_and_samples(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, paths = runs
    record, samples = read_samples(paths["ppo"])
    [folder] = (out / "tensorboard").iterdir()
    assert folder.name == paths["ppo"].stem
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    kl = events.Scalars("objective/kl")
    assert [e.step for e in kl] == [1, 2, 3, 4]
    assert [e.value for e in kl] == pytest.approx([point["kl"] for point in record["train_curve"]])
    rewards = events.Scalars("eval/reward")
    assert [e.step for e in rewards] == [p["iteration"] for p in record["eval_curve"]]
    assert [e.value for e in rewards] == pytest.approx([p["reward"] for p in record["eval_curve"]])
    assert events.Scalars("test/perplexity")[0].value == pytest.approx(record["final"]["test"]["perplexity"])
    texts = {tag.split("/text_summary")[0]: [e.tensor_proto.string_val[0].decode() for e in events.Tensors(tag)]
             for tag in events.Tags()["tensors"] if tag.endswith("/text_summary")}  # add_text's tags
    assert len(texts["eval/samples"]) == 3 and samples[0]["response"].strip() in texts["eval/samples"][0]
    assert '"kl_coef"' in texts["config"][0]


@pytest.mark.parametrize("args, message", [
    (["run", "imdb", "--method", "ppo", "--report-to", "mlflow"], "unknown tracker 'mlflow'"),
    (["sweep", "imdb", "--grid", "paper", "--report-to", "mlflow"], "unknown tracker 'mlflow'"),
    (["run", "imdb", "--method", "ppo", "--set", "train.eval_samples=-1"], "train.eval_samples must be >= 0"),
])
def test_bad_tracker_or_sample_count_exits_2_with_one_line(tmp_path, args, message):
    assert_one_line_error(erbench_in_process(*args, "--data-dir", str(DATA_DIR), cache_dir=tmp_path), message)


def test_no_samples_file_when_none_are_asked_for(tmp_path):
    from erbench.results import RunRecord

    record = RunRecord(tmp_path / "run.json", {"eval_curve": [], "resets": []})
    record.add_eval(0, {"reward": 0.5})
    assert "samples_file" not in json.loads((tmp_path / "run.json").read_text()) and not record.samples_path.exists()


def test_drift_examples_show_one_seed_the_one_most_methods_have(tmp_path):
    """Each method's final response next to one initial response: all rows from the seed most methods ran."""
    from erbench.report.samples import drift_examples

    def record(method, seed):
        path = tmp_path / f"{method}-seed{seed}.json"
        lines = [{"iteration": it, "split": "val", "model": "policy", "index": 0, "prompt": f"prompt of seed {seed}",
                  "response": f"{method} {seed} at {it}", "reward": 0.5, "kl_to_init": float(it)} for it in (0, 10)]
        path.with_suffix(".samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return {"path": str(path), "samples_file": path.with_suffix(".samples.jsonl").name, "task": "imdb",
                "scale": "tiny", "method": method, "seed": seed, "train": {}, "method_config": {}, "task_config": {}}

    records = [record("ppo", 0), record("ppo", 1), record("elastic", 1), record("reset", 1), record("elastic", 0)]
    text = drift_examples(records + [{**record("nlpo", 1), "samples_file": "missing.samples.jsonl"}])
    assert "#### imdb (tiny), seed 1" in text and "prompt of seed 0" not in text and "nlpo" not in text
    assert text.count("| initial |") == 1 and "| ppo seed1 @ 10 | ppo 1 at 10 |" in text and "| reset seed1 @ 10 |" in text
