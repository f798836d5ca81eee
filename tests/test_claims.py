"""Claims as statistics: reward at a fixed drift, bootstrap verdicts, claims.toml validation, the Findings writer."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, erbench_in_process
from erbench.errors import ErbenchError
from erbench.report.claims import (CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH, SUPPORTED, Z, Comparison, Verdict, claim_needed,
                                   combine, compare, evaluate, findings_markdown, headline_markdown, load_claims, needed_text, p_improve,
                                   parse_claim, scale_sentences, seeds_to_decide, verdict_line)
from erbench.report.findings import MARKERS

BEGIN, END = MARKERS["findings"]
SAMPLES_BEGIN, SAMPLES_END = MARKERS["samples"]
from erbench.report.pareto import reward_at_fixed_drift
from erbench.report.tables import reward_at_level

REPO = Path(__file__).resolve().parents[1]


# --- reward at a fixed drift ---

def test_a_segment_crossing_the_level_is_interpolated_at_it():
    # (0, 0.5) -> (10, 1.0) crosses 5 halfway: 0.75, more than any point inside.
    assert reward_at_fixed_drift([0, 10], [0.5, 1.0], 5) == pytest.approx(0.75)


def test_a_path_that_never_leaves_the_level_gives_its_best_reward():
    assert reward_at_fixed_drift([0, 2, 4, 3], [0.5, 0.7, 0.6, 0.65], 5) == pytest.approx(0.7)
    assert reward_at_fixed_drift([0, 5], [0.5, 0.9], 5) == pytest.approx(0.9)  # exactly at the level is inside


def test_a_path_starting_beyond_the_level_has_no_value():
    assert math.isnan(reward_at_fixed_drift([6, 1], [0.5, 0.9], 5))
    assert math.isnan(reward_at_fixed_drift([], [], 5))


def test_a_return_inside_the_level_after_a_reset_counts():
    # Out to 10 (0.9), a reset back to 2 (0.6): both crossings at 5 count; the way back gives 0.9 - 0.3 * 5/8.
    assert reward_at_fixed_drift([0, 10, 2], [0.5, 0.9, 0.6], 5) == pytest.approx(0.7125)
    # Far beyond the level, the best reward there does not count.
    assert reward_at_fixed_drift([0, 4, 50, 4], [0.5, 0.6, 0.99, 0.55], 5) < 0.7


def test_a_higher_is_better_drift_keeps_the_path_above_the_level():
    curve = [{"bleu_en": 18.0, "reward": 10.0}, {"bleu_en": 16.0, "reward": 12.0}, {"bleu_en": 17.5, "reward": 11.0}]
    # bleu_en >= 17: 10 at 18, 11 at 17.5, and the crossings at 17: 11 on the way down, 12 - 2/3 on the way up.
    assert reward_at_level(curve, "bleu_en", 17.0, "higher") == pytest.approx(12 - 2 / 3)
    assert math.isnan(reward_at_level(curve, "bleu_en", 18.5, "higher"))


# --- verdicts ---

def run(method, seed, reward, perplexity=120.0, scale="tiny", kl_coef=0.001, ema_decay=0.995, **extra):
    curve = [{"iteration": 0, "reward": 0.5, "perplexity": 100.0, "kl_to_init": 0.0},
             {"iteration": 5, "reward": reward, "perplexity": perplexity, "kl_to_init": 5.0}]
    return {"schema": "erbench.run/1", "status": "completed", "task": "imdb", "scale": scale, "method": method, "seed": seed,
            "task_config": {}, "train": {"kl_coef": kl_coef}, "method_config": {"ema_decay": ema_decay, **extra},
            "eval_curve": curve, "resets": [], "final": {"val": curve[-1], "test": curve[-1]}, "path": f"{method}-{seed}-{reward}"}


CLAIM = {"id": "c", "text": "elastic beats ppo", "source": "test", "task": "imdb", "kind": "reward_at_drift",
         "method": "elastic", "baselines": ["ppo"], "drift": "perplexity", "min_seeds": 3, "seeds": 3}
LEVELS = {"imdb": {"tiny": {"perplexity": 150.0}}}


def judge(mine, theirs, claim=CLAIM, levels=LEVELS):
    records = [run("elastic", s, r) for s, r in enumerate(mine)] + [run("ppo", s, r) for s, r in enumerate(theirs)]
    [verdict] = evaluate(parse_claim(claim), records, levels)
    return verdict


def test_a_clear_win_is_supported_and_a_clear_loss_contradicted():
    win = judge([0.80, 0.82, 0.81, 0.83], [0.60, 0.62, 0.61, 0.63])
    assert win.verdict == SUPPORTED
    [c] = win.comparisons
    assert c.difference == pytest.approx(0.20) and 0.18 <= c.low < 0.20 < c.high <= 0.22
    assert c.p_improve == 1.0 and c.seeds == (4, 4)
    loss = judge([0.60, 0.62, 0.61], [0.80, 0.82, 0.81])
    assert loss.verdict == CONTRADICTED and loss.comparisons[0].high < 0 and loss.comparisons[0].p_improve == 0.0


def test_overlapping_runs_are_inconclusive():
    verdict = judge([0.60, 0.80, 0.70, 0.65], [0.62, 0.78, 0.69, 0.70])
    [c] = verdict.comparisons
    assert verdict.verdict == INCONCLUSIVE and c.low < 0 < c.high


def test_fewer_seeds_than_the_claim_declares_is_not_enough_data():
    verdict = judge([0.80, 0.82], [0.60, 0.62, 0.61])
    assert verdict.verdict == NOT_ENOUGH and verdict.comparisons[0].seeds == (2, 3)


def test_a_scale_without_a_level_is_not_enough_data_naming_the_level():
    verdict = judge([0.8] * 3, [0.6] * 3, levels={"imdb": {"small": {"perplexity": 150.0}}})
    assert verdict.verdict == NOT_ENOUGH and "[levels.imdb.tiny]" in verdict.note and "perplexity" in verdict.note


def test_a_claim_is_judged_only_at_its_scales():
    """A claim whose drift metric sits at a floor at tiny (HumanEval pass@1) declares where it is judged instead."""
    records = [run(m, s, r, scale=scale) for scale in ("tiny", "small") for m, r in (("elastic", 0.8), ("ppo", 0.6)) for s in range(3)]
    levels = {"imdb": {"tiny": {"perplexity": 150.0}, "small": {"perplexity": 150.0}}}
    [verdict] = evaluate(parse_claim({**CLAIM, "scales": ["small"]}), records, levels)
    assert verdict.scale == "small" and verdict.verdict == SUPPORTED
    [verdict] = evaluate(parse_claim({**CLAIM, "scales": ["paper"]}), records, levels)
    assert verdict.verdict == NOT_ENOUGH and "at scale paper" in verdict.note


def test_runs_starting_beyond_the_level_are_left_out():
    verdict = judge([0.8] * 3, [0.6] * 3, levels={"imdb": {"tiny": {"perplexity": 90.0}}})
    assert verdict.verdict == NOT_ENOUGH and verdict.comparisons[0].seeds == (0, 0) and "6 run(s)" in verdict.note


def test_identical_values_give_the_point_as_interval():
    c = compare([0.8, 0.8, 0.8], [0.6, 0.6, 0.6], 3)
    assert (c.low, c.difference, c.high) == pytest.approx((0.2, 0.2, 0.2)) and c.verdict == SUPPORTED


def test_the_interval_is_deterministic():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.7, 0.05, 5), rng.normal(0.65, 0.05, 5)
    assert compare(a, b, 3) == compare(a, b, 3)


def test_probability_of_improvement_counts_ties_half():
    assert p_improve(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == pytest.approx((0 + 0 + 1 + 0.5) / 4)


def test_several_baselines_are_supported_only_if_every_one_is():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([SUPPORTED, NOT_ENOUGH, CONTRADICTED]) == CONTRADICTED
    assert combine([SUPPORTED, NOT_ENOUGH]) == NOT_ENOUGH


def test_a_side_is_its_where_settings_and_the_recipe_default_elsewhere():
    # ppo at the default beta (0.001, the tiny recipe) loses; ppo at beta 1.0 wins: each side picks its own runs.
    records = [run("elastic", s, 0.7) for s in range(3)]
    records += [run("ppo", s, 0.5 + 0.01 * s) for s in range(3)]
    records += [run("ppo", s, 0.9 + 0.01 * s, kl_coef=1.0) for s in range(3)]
    claim = {**CLAIM, "baselines": ["ppo", {"method": "ppo", "where": {"train.kl_coef": 1.0}}]}
    [verdict] = evaluate(parse_claim(claim), records, LEVELS)
    assert [c.verdict for c in verdict.comparisons] == [SUPPORTED, CONTRADICTED]
    assert verdict.comparisons[1].baseline == "ppo [β0=1.0]" and verdict.verdict == CONTRADICTED
    # A field older records lack reads as its default: reset_critic=true matches none of them.
    claim = {**CLAIM, "baselines": [{"method": "elastic", "where": {"method.reset_critic": True}}]}
    [verdict] = evaluate(parse_claim(claim), records, LEVELS)
    assert verdict.comparisons[0].seeds == (3, 0)


def test_a_change_from_the_initial_model_needs_its_direction_and_its_standard_errors():
    claim = {"id": "m", "text": "ppo raises reward", "source": "test", "task": "imdb", "kind": "change_from_initial",
             "method": "ppo", "metric": "reward", "direction": "increase", "min_stderrs": 3, "min_seeds": 3, "seeds": 3}

    def verdict(finals, **change):
        [v] = evaluate(parse_claim({**claim, **change}), [run("ppo", s, r) for s, r in enumerate(finals)], LEVELS)
        return v

    clear = verdict([0.60, 0.61, 0.62, 0.60])  # every run starts at 0.5
    [c] = clear.comparisons
    assert clear.verdict == SUPPORTED and c.difference == pytest.approx(0.1075) and 0.0999 <= c.low < c.high <= 0.12
    assert c.stderrs == pytest.approx(0.1075 / (np.std([0.10, 0.11, 0.12, 0.10], ddof=1) / 2)) and c.p_improve == 1.0
    assert verdict([0.52, 0.50, 0.55, 0.51]).verdict == INCONCLUSIVE  # an interval above zero, but 1.9 s.e. < 3
    assert verdict([0.52, 0.50, 0.55, 0.51], min_stderrs=1.5).verdict == SUPPORTED
    assert verdict([0.40, 0.41, 0.42]).verdict == CONTRADICTED
    assert verdict([0.40, 0.41, 0.42], direction="decrease").verdict == SUPPORTED
    assert verdict([0.60, 0.61]).verdict == NOT_ENOUGH
    assert "+22.5 s.e." in verdict_line(clear) and "ppo final minus initial" in verdict_line(clear)


# --- the power rule ---

def test_the_power_rule_is_the_fewest_seeds_whose_interval_excludes_zero():
    assert seeds_to_decide(1.0, 1.0) == 4  # 1 > 1.96 / sqrt(n): n > 3.84
    assert seeds_to_decide(-0.5, 1.0) == 16  # either sign: n > 15.4
    assert seeds_to_decide(Z / 2, 1.0) == 5  # exactly z s.e. at 4 seeds does not exclude zero
    assert seeds_to_decide(1.0, 1.0, min_stderrs=3) == 9  # and at least 3 s.e.: 1 >= 3 / sqrt(9)
    assert seeds_to_decide(0.1, 1.0) == math.inf and seeds_to_decide(0.0, 1.0) == math.inf  # beyond 40 seeds a side
    assert [needed_text(n) for n in (9, math.inf, math.nan)] == ["9", "> 40", "–"]


def comparison_line(c):
    return verdict_line(Verdict(parse_claim(CLAIM), "tiny", 150.0, c.verdict, (c,)))


def test_an_inconclusive_comparison_gets_the_seeds_its_difference_and_spread_need():
    # Difference 0.5, each side's standard deviation 1: n > (1.96 * sqrt(2) / 0.5)^2 = 30.7.
    c = compare([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], 3)
    assert c.verdict == INCONCLUSIVE and c.needed == 31 and "seeds to decide 31" in comparison_line(c)
    assert math.isnan(compare([0.8, 0.81, 0.82], [0.6, 0.61, 0.62], 3).needed)  # decided
    assert math.isnan(compare([1.0, 2.0], [0.5, 1.5, 2.5], 3).needed)  # not enough data


def test_a_change_short_of_its_standard_errors_gets_the_seeds_that_reach_them():
    claim = {"id": "m", "text": "ppo raises reward", "source": "test", "task": "imdb", "kind": "change_from_initial",
             "method": "ppo", "metric": "reward", "direction": "increase", "min_stderrs": 2.9, "min_seeds": 3, "seeds": 3}
    runs = [run("ppo", s, r) for s, r in enumerate([0.50, 0.52, 0.54])]  # changes 0, 0.02, 0.04: mean = s = 0.02

    def needed(**change):
        [v] = evaluate(parse_claim({**claim, **change}), runs, LEVELS)
        assert v.verdict == INCONCLUSIVE
        return v.comparisons[0].needed

    assert needed() == 9  # 2.9 s.e.: sqrt(n) >= 2.9
    assert needed(min_stderrs=0) == 4  # the interval alone: sqrt(n) > 1.96
    assert needed(direction="decrease") == 4  # heading the other way it contradicts as soon as zero is excluded


def test_a_claim_is_decided_by_its_first_comparison_heading_against_it_else_by_its_last():
    def needed(*comparisons):
        verdict = combine([c[0] for c in comparisons])
        return claim_needed(Verdict(parse_claim(CLAIM), "tiny", 150.0, verdict,
                                    tuple(Comparison("b", v, d, -1, 1, 0.5, (5, 5), needed=n) for v, d, n in comparisons)))

    assert needed((INCONCLUSIVE, 0.2, 11), (INCONCLUSIVE, -0.05, math.inf), (INCONCLUSIVE, -0.2, 12)) == 12
    assert needed((INCONCLUSIVE, 0.2, 11), (SUPPORTED, 0.3, math.nan), (INCONCLUSIVE, 0.1, 23)) == 23
    assert needed((INCONCLUSIVE, 0.01, math.inf), (INCONCLUSIVE, 0.2, 8)) == math.inf
    assert math.isnan(needed((SUPPORTED, 0.3, math.nan), (CONTRADICTED, -0.2, math.nan)))


def test_a_line_per_task_and_scale_says_what_its_verdicts_decided():
    records = [run(m, s, r + 0.01 * s) for m, r in (("elastic", 0.80), ("ppo", 0.60), ("reset", 0.90)) for s in range(3)]
    records += [run("reset-ema", s, r) for s, r in enumerate([0.70, 0.81, 0.92])] + [run("elastic", 0, 0.8, scale="small")]
    change = {"id": "m", "text": "ppo raises reward", "source": "test", "task": "imdb", "kind": "change_from_initial",
              "method": "ppo", "metric": "reward", "direction": "increase", "min_seeds": 3, "seeds": 3}
    claims = [{**CLAIM, "baselines": ["ppo", "reset", "reset-ema"]}, {**CLAIM, "id": "k", "drift": "kl_to_init", "baselines": ["ppo", "reset"]},
              {**CLAIM, "id": "e", "baselines": ["reset-ema"]}, change]
    levels = {"imdb": {"tiny": {"perplexity": 150.0, "kl_to_init": 6.0}}}

    def sentences(*chosen):
        return scale_sentences([v for claim in chosen for v in evaluate(parse_claim(claim), records, levels)])

    # Won, lost and undecided, merged over the claims and drifts that say the same; the small scale has no verdict.
    assert sentences(*claims) == ["- **imdb tiny**: elastic beats ppo at the same perplexity and kl_to_init; reset beats elastic at "
                                  "the same perplexity and kl_to_init; ppo raises reward — undecided: elastic vs reset-ema at the same perplexity."]
    assert sentences(claims[2]) == ["- **imdb tiny**: nothing decided yet — undecided: elastic vs reset-ema at the same perplexity."]
    assert sentences({**change, "direction": "decrease"}) == ["- **imdb tiny**: ppo raises reward."]  # contradicted: it rises
    small = evaluate(parse_claim(CLAIM), [run("elastic", 0, 0.8, scale="small")], levels)  # nothing judged: no line, no gap
    assert headline_markdown(small).startswith("| verdict |") and findings_markdown(small).startswith("| task |")


@pytest.mark.parametrize("change, message", [
    ({"metric": "bleu_en"}, "unknown metric 'bleu_en'"),
    ({"direction": "up"}, "direction = 'up'"),
    ({"min_stderrs": -1}, "min_stderrs"),
    ({"direction": None}, "missing direction"),
])
def test_a_bad_change_claim_is_refused_naming_the_claim(change, message):
    claim = {"id": "m", "text": "t", "source": "s", "task": "imdb", "kind": "change_from_initial", "method": "ppo",
             "metric": "reward", "direction": "increase", "min_seeds": 3, "seeds": 3, **change}
    with pytest.raises(ErbenchError, match="claim 'm'") as error:
        parse_claim({k: v for k, v in claim.items() if v is not None})
    assert message in str(error.value)


# --- claims.toml ---

@pytest.mark.parametrize("change, message", [
    ({"kind": "dominates"}, "unknown kind 'dominates'"),
    ({"method": "elastik"}, "unknown method 'elastik'"),
    ({"baselines": ["frozen-english"]}, "does not apply to task imdb"),
    ({"drift": "bleu_en"}, "unknown drift metric 'bleu_en'"),
    ({"baselines": [{"method": "ppo", "where": {"train.kl_coeff": 1}}]}, "unknown setting 'train.kl_coeff'"),
    ({"min_seeds": 1}, "min_seeds"),
    ({"seeds": "ten"}, "seeds = 'ten'"),
    ({"seeds": 2.5}, "seeds = 2.5"),
    ({"seeds": 1, "min_seeds": 2}, "seeds = 1"),
    ({"seeds": 2}, "seeds = 2 is below min_seeds = 3"),
    ({"seeds": None}, "missing seeds"),
    ({"drift": None}, "missing drift"),
    ({"scales": "tiny"}, "scales = 'tiny'"),
])
def test_a_bad_claim_is_refused_naming_the_claim(change, message):
    claim = {k: v for k, v in {**CLAIM, **change}.items() if v is not None}
    with pytest.raises(ErbenchError, match="claim 'c'") as error:
        parse_claim(claim)
    assert message in str(error.value)


def test_the_committed_claims_load():
    claims, levels = load_claims(REPO / "results" / "claims.toml")
    assert {c.task for c in claims} == {"imdb", "translation", "stackllama", "arith"}
    assert levels["imdb"]["tiny"] == {"perplexity": 320.0, "kl_to_init": 5.0}



@pytest.mark.parametrize("task", ["imdb", "translation", "stackllama", "arith"])
def test_each_claims_grid_runs_every_tiny_claim_to_its_registered_seeds(task):
    """`erbench sweep TASK --grid claims --seeds 20` must give every side of every tiny claim its registered count."""
    from erbench.registry import registry
    from erbench.report.claims import select
    from erbench.runner import resolve_run
    from erbench.sweep import expand

    jobs = expand(task, registry().task(task).recipe["grids"]["claims"], None, 20, [])
    records = [resolve_run(task, job.method, job.scale, job.seed, list(job.sets)).to_dict() for job in jobs]
    claims, _ = load_claims(REPO / "results" / "claims.toml")
    for claim in (c for c in claims if c.task == task and (not c.scales or "tiny" in c.scales)):
        for side in (claim.method, *claim.baselines):
            runs = select(records, side, task, "tiny", claim.id)
            assert len(runs) >= claim.seeds, f"{claim.id}: {side.label()} gets {len(runs)} of {claim.seeds} registered seeds"


# --- the committed report and the README's Findings ---

CLAIMS_TOML = """
[levels.imdb.tiny]
perplexity = 150.0

[[claim]]
id = "c"
text = "elastic beats ppo"
source = "test"
task = "imdb"
kind = "reward_at_drift"
method = "elastic"
baselines = ["ppo"]
drift = "perplexity"
min_seeds = 3
seeds = 3
"""


@pytest.fixture
def repo(tmp_path):
    results = tmp_path / "results"
    for s in range(3):
        for r in (run("elastic", s, 0.80 + 0.01 * s), run("ppo", s, 0.60 + 0.01 * s)):
            path = results / "runs" / f"{r['method']}-{s}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({k: v for k, v in r.items() if k != "path"}))
    (tmp_path / "claims.toml").write_text(CLAIMS_TOML)
    tour = "".join(f"{MARKERS[block][0]}\nold\n{MARKERS[block][1]}\n\n" for block in ("tour-run", "tour-report", "tour-samples", "speed"))
    (tmp_path / "README.md").write_text(f"# erbench\n\n{tour}## Findings\n\n{BEGIN}\nold\n{END}\n\nMore text.\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "observability.md").write_text(f"# Samples\n\n{SAMPLES_BEGIN}\nold samples\n{SAMPLES_END}\n")
    return tmp_path


def report(repo, *args):
    return erbench_in_process("report", "--results", str(repo / "results"), "--claims-file", str(repo / "claims.toml"),
                   "--published-file", str(REPO / "results" / "published.csv"), "--readme", str(repo / "README.md"),
                   "--report-file", str(repo / "results" / "report.md"), "--docs", str(repo / "docs"), *args, cache_dir=repo)


def test_findings_are_written_between_the_markers_and_verified(repo):
    assert report(repo, "--write").returncode == 0
    readme = (repo / "README.md").read_text()
    assert readme.startswith("# erbench\n\n") and f"{END}\n\nMore text.\n" in readme and "old" not in readme
    # The headline: a line per claim and scale, with the comparison that decides it.
    assert "| **SUPPORTED** | tiny | elastic beats ppo (reward at perplexity <= 150) | vs ppo +0.200 [" in readme
    assert "| seeds to decide |" in readme and "3 vs 3 seeds | – |" in readme  # decided: no seeds to decide
    assert "registered seeds)" not in readme  # every registered seed is in
    assert f"{BEGIN}\n- **imdb tiny**: elastic beats ppo at the same perplexity.\n\n| verdict |" in readme
    # The tour: what `erbench run` printed for elastic seed 0, an excerpt of the report; these records have no samples.
    assert "$ erbench run imdb --method elastic\n" in readme and "resets after iterations: none\nrecord: " in readme
    assert "$ erbench report\n(no committed records of translation at scale tiny)" in readme
    assert "(no committed imdb tiny records of elastic, ppo-nokl at seed 2 with samples)" in readme
    samples = (repo / "docs" / "observability.md").read_text()
    assert f"{SAMPLES_BEGIN}\nNo committed record has samples yet.\n{SAMPLES_END}" in samples
    written = (repo / "results" / "report.md").read_text()
    assert "### Claims" in written and "| imdb | tiny | elastic beats ppo (`c`;" in written  # the full table
    printed = report(repo, "--published", "--claims")
    assert printed.stdout == written  # the committed report is exactly what `report --published --claims` prints
    ok = report(repo, "--verify")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("stale, word", [("README.md", "SUPPORTED"), ("README.md", "record: "), ("results/report.md", "SUPPORTED"),
                                         ("docs/observability.md", "No committed")])
def test_verify_fails_after_a_hand_edit(repo, stale, word):
    assert report(repo, "--write").returncode == 0
    path = repo / stale
    path.write_text(path.read_text().replace(word, f"{word} (typed)", 1))
    out = report(repo, "--verify")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and str(path) in lines[0] and "--write" in lines[0]


def test_a_verdict_on_fewer_runs_than_registered_says_so_and_stays_computed(repo):
    claims = repo / "claims.toml"
    claims.write_text(CLAIMS_TOML.replace("\nseeds = 3\n", "\nseeds = 10\n"))
    assert report(repo, "--write").returncode == 0
    assert "| **SUPPORTED** (3 of 10 registered seeds) | tiny | elastic beats ppo" in (repo / "README.md").read_text()
    written = (repo / "results" / "report.md").read_text()
    assert "need 3 seeds, 10 registered) | **SUPPORTED** (3 of 10 registered seeds) | ppo |" in written
    claims.write_text(CLAIMS_TOML.replace("\nseeds = 3\n", "\nseeds = 3.5\n"))
    assert_one_line_error(report(repo, "--claims"), "claim 'c' in claims.toml: seeds = 3.5")


def test_a_readme_without_markers_is_refused(repo):
    (repo / "README.md").write_text("# erbench\n")
    assert_one_line_error(report(repo, "--write"), "findings:begin")
    assert (repo / "README.md").read_text() == "# erbench\n" and not (repo / "results" / "report.md").exists()
