"""The arith task (issue 28): the exact answer parser under adversarial strings, seeded problem generation, the
stop at the answer line, the held-out operation, bad recipes; end to end (marked e2e) prepare, PPO and GRPO runs."""

import json

import pytest
import torch

from conftest import assert_one_line_error, erbench, erbench_in_process, sets
from erbench.metrics.pass_at_k import pass_at_k
from erbench.tasks.arith import (ArithConfig, AnswerLineStop, VerifiableReward, char_tokenizer, generate_splits,
                                 gsm8k_answer, is_correct, parse_answer)


@pytest.mark.parametrize("response, answer", [
    (" 12+30=42\n#### 42\n", 42),
    ("#### 0\n", 0),
    (" 5-9=-4\n#### -4\n", -4),
    ("#### 42\n#### 41\n", 42),  # several answer lines: only the first counts
    ("\n\nno steps\n#### 7\ntrailing text without a newline", 7),
])
def test_well_formed_answers_parse(response, answer):
    assert parse_answer(response) == answer and is_correct(response, answer)


@pytest.mark.parametrize("response", [
    "", "42", "#### 42",  # no complete answer line: cut by the length limit
    "#### " + "9" * 31 + "\n",  # more digits than any answer has
    "#### " + "9" * 5000 + "\n",  # past Python's int() digit limit: must not raise
    "#### ٤٢\n", "#### ４２\n", "#### 4٢\n",  # non-ASCII digits that int() would accept
    "#### 42 43\n", "#### 41\n#### 42\n",  # several answers on the line; a wrong first line is not rescued
    "#### 042\n", "#### -0\n", "#### +42\n", "#### 42.0\n", "#### 4,2\n", "####42\n", "#### 42 \n", "#####42\n",
    " #### 42\n", "#### 42\r\n", "\x00#### 42\n", "####\n",
])
def test_malformed_or_missing_answers_score_zero(response):
    assert not is_correct(response, 42) and parse_answer(response) in (None, 41)


def test_the_reward_scores_texts_by_their_prompt_and_never_raises_on_bad_responses():
    reward = VerifiableReward({"Q: 2+2\nA:": 4, "Q: 2+2*3\nA:": 8})
    texts = ["Q: 2+2\nA: 2+2=4\n#### 4\n", "Q: 2+2*3\nA:\n#### 4\n", "Q: 2+2*3\nA:\n#### 8\n",  # the longest prompt wins
             "Q: 2+2\nA:\n#### " + "4" * 10_000 + "\n", "Q: 2+2\nA:\n#### ٤\n", "Q: 2+2\nA:", "Q: 2+2\nA: #### 4\n"]
    assert reward(texts).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # the answer line starts its line


def test_the_same_seed_generates_the_same_problems_and_splits_are_disjoint():
    cfg = ArithConfig(train_problems=3000, eval_problems=16, test_problems=16, probe_problems=16)
    first, second = generate_splits(cfg), generate_splits(cfg)
    assert first == second
    other = generate_splits(ArithConfig(train_problems=3000, eval_problems=16, test_problems=16, probe_problems=16, problem_seed=1))
    assert [p.prompt for p in other.val] != [p.prompt for p in first.val]
    bigger = generate_splits(ArithConfig(train_problems=3000, eval_problems=64, test_problems=32, probe_problems=8))
    assert bigger.train == first.train  # held-out sizes are evaluation fields: the pretraining text stays
    assert not {p.prompt for p in bigger.train} & {p.prompt for p in bigger.val + bigger.test + bigger.probe_val}
    prompts = {name: [p.prompt for p in getattr(first, name)] for name in ("train", "val", "test", "probe_val", "probe_test")}
    assert sum(map(len, prompts.values())) == len(set().union(*prompts.values()))  # no problem in two splits, none twice
    assert {p.op for p in first.val + first.test} == {"add", "mul", "chain"}  # the RL operations only
    assert {p.op for p in first.probe_val + first.probe_test} == {"sub"}
    assert {p.op for p in first.train} == {"add", "sub", "mul", "chain"}  # the LM learns the held-out operation too
    for p in first.train + first.val + first.probe_val:  # every worked solution is its own answer, in the stated format
        expression = p.prompt.removeprefix("Q: ").removesuffix("\nA:")
        assert p.answer == eval(expression) and parse_answer(p.solution) == p.answer  # noqa: S307 (digits and + - * only)
        assert char_tokenizer().decode(char_tokenizer().encode(p.prompt + p.solution).ids) == p.prompt + p.solution


def test_pass_at_k_is_unbiased_and_monotone_in_k():
    assert pass_at_k(64, 0, 64) == 0.0 and pass_at_k(64, 1, 64) == 1.0 and pass_at_k(64, 16, 1) == pytest.approx(0.25)
    values = [pass_at_k(64, 3, k) for k in (1, 2, 4, 8, 16, 32, 64)]
    assert values == sorted(values) and values[0] == pytest.approx(3 / 64)
    assert ArithConfig(samples_per_problem=64).ks() == [1, 2, 4, 8, 16, 32, 64] and ArithConfig(samples_per_problem=5).ks() == [1, 2, 4]


def test_sampling_stops_at_the_answer_line_per_row():
    tokenizer = char_tokenizer()
    pieces = [tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size())]
    rows = [" 1+1=2\n#### 2\nQ: 3", "#### 17 junk", " 3*4=12\n#### 12\n#"]
    ids = torch.tensor([tokenizer.encode(r).ids for r in [r.ljust(18) for r in rows]])
    prompt = torch.zeros((3, 4), dtype=torch.long)
    stop = AnswerLineStop(pieces, prompt_width=4, rows=3)
    done = [stop(torch.cat([prompt, ids[:, : t + 1]], 1)).tolist() for t in range(ids.shape[1])]
    assert stop.lengths == [len(" 1+1=2\n#### 2\n"), 0, len(" 3*4=12\n#### 12\n")]
    assert done[len(" 1+1=2\n#### 2\n") - 1] == [True, False, False] and done[-1] == [True, False, True]


def test_gsm8k_answers_are_the_integer_after_the_marks():
    assert gsm8k_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == 72
    assert gsm8k_answer("...\n#### 1,000") == 1000 and gsm8k_answer("#### -3") == -3


@pytest.mark.parametrize("setting, message", [
    ("task.operations=add,div", "task.operations must be a comma-separated list of add, sub, mul, chain"),
    ("task.holdout=mul", "task.holdout must be one of task.operations (add,sub)"),
    ("task.samples_per_problem=0", "task.samples_per_problem must be an integer >= 1"),
])
def test_a_bad_arith_recipe_is_one_line(setting, message, tmp_path):
    extra = ["--set", "task.operations=add,sub"] if setting.startswith("task.holdout") else []
    assert_one_line_error(erbench_in_process("config", "arith", "-m", "ppo", *extra, "--set", setting, cache_dir=tmp_path), message)


# --- end to end: the real CLI at a shrunken tiny scale ------------------------------------------------------------

FAST = ["task.train_problems=2000", "task.lm_layers=2", "task.lm_width=32", "task.lm_heads=2", "task.lm_train_tokens=40000",
        "task.eval_problems=4", "task.test_problems=4", "task.probe_problems=4", "task.kl_samples=2", "task.ppl_solutions=8",
        "train.iterations=4", "train.rollout_prompts=8", "train.num_minibatches=2", "train.ppo_epochs=2", "train.eval_every=2",
        "method.reset_every=2"]


@pytest.mark.e2e
def test_arith_prepares_trains_with_ppo_and_grpo_and_plots_pass_at_k(tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    prepared = erbench("prepare", "arith", *sets(*FAST), cache_dir=cache)
    assert prepared.returncode == 0, prepared.stderr
    meta = json.loads(next((cache / "arith").glob("*/meta.json")).read_text())
    assert meta["train_problems"] == 2000 and meta["lm_steps"] >= 1

    for args in (["-m", "elastic"], ["-m", "elastic", "--algo", "grpo"]):
        result = erbench("run", "arith", *args, "--out", str(runs), *sets(*FAST), cache_dir=cache)
        assert result.returncode == 0, result.stderr
    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in runs.glob("*.json"))}
    assert set(records) == {"elastic", "grpo-elastic"}
    ppo = records["elastic"]
    assert ppo["status"] == "completed" and ppo["resets"] == [2, 4]
    for record in records.values():
        for point in record["eval_curve"] + [record["final"]["test"]]:
            passes = [point[f"pass@{k}"] for k in (1, 2, 4, 8, 16, 32, 64)]
            assert passes == sorted(passes) and all(0.0 <= p <= 1.0 for p in passes)  # pass@k never falls with k
            assert point["reward"] == pytest.approx(point["pass@1"])  # the reward is pass@1: mean correctness
            assert 0.0 <= point["holdout_accuracy"] <= 1.0 and 0.0 <= point["answer_rate"] <= 1.0
            assert point["perplexity"] > 1.0 and point["kl_to_init"] >= 0.0 and 0.0 <= point["distinct_2"] <= 1.0
        assert record["eval_curve"][0]["kl_to_init"] == pytest.approx(0.0, abs=1e-6)  # iteration 0 is the initial model
    rows = [json.loads(line) for line in next(runs.glob("arith-elastic-tiny-*.samples.jsonl")).read_text().splitlines()]
    assert len(rows) == 4 * 4 and {r["split"] for r in rows} == {"val", "test"}  # 4 problems at 3 val evaluations and test
    assert all(r["reward"] == float(is_correct(r["response"], r["answer"])) for r in rows)  # rewards are the parser's
    assert all(r["prompt"].startswith("Q: ") and r["prompt"].endswith("\nA:") for r in rows)

    plotted = erbench("plot", "--pass-at-k", "--results", str(runs), cache_dir=cache)
    assert plotted.returncode == 0, plotted.stderr
    assert (runs / "pass-at-k-arith-tiny.png").stat().st_size > 10_000


def test_the_tiny_description_names_the_recipes_layer_count():
    """`erbench list` shows the scale's description: it must say the LM the recipe builds (it once said 4 layers of a
    2-layer recipe)."""
    import re
    import tomllib
    from pathlib import Path

    recipe = tomllib.loads((Path(__file__).parents[1] / "tasks" / "arith.toml").read_text())["scales"]["tiny"]
    layers = re.findall(r"(\d+)-layer", recipe["description"])
    assert layers == [str(recipe["task"]["lm_layers"])]
