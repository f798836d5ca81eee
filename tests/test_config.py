"""Recipe resolution: scale < method preset < recipe method overrides < --set."""

import pytest

from erbench.config import resolve
from erbench.errors import ErbenchError
from erbench.methods.elastic_reset import ElasticResetConfig


def cfg(method, scale="tiny", *sets):
    return resolve("imdb", scale, method, 0, list(sets))


def test_paper_scale_carries_the_papers_imdb_values():
    c = cfg("elastic", "paper")
    assert (c.train.lr, c.train.ppo_epochs, c.train.num_minibatches, c.train.iterations) == (1e-6, 5, 20, 50)
    assert (c.train.gamma, c.train.gae_lambda, c.train.clip_range, c.train.vf_coef, c.train.max_grad_norm) == (0.99, 0.95, 0.2, 0.5, 0.5)
    assert (c.train.kl_coef, c.train.kl_target, c.train.kl_controller) == (0.001, 1.0, "adaptive")
    assert c.method_config == ElasticResetConfig(ema_decay=0.995, reset_every=17, first_reset_after=1, reset_ema=True,
                                                 kl_reference="ema", ema_update="iteration")
    assert c.task_config.policy == "lvwerra/gpt2-imdb" and c.task_config.reward == "lvwerra/distilbert-imdb"
    assert cfg("ppo", "paper").train.kl_coef == 0.1  # the recipe's [scales.paper.methods.ppo.train]


def test_method_presets():
    assert cfg("ppo-nokl").train.kl_coef == 0.0 and cfg("ppo-nokl").train.kl_controller == "fixed"
    assert cfg("ppo").method_config.reset_every is None and cfg("ppo").method_config.kl_reference == "init"
    assert cfg("reset").method_config.ema_decay == 1.0
    assert cfg("reset-ema").method_config.reset_ema is False
    assert cfg("ema-ref").method_config.reset_every is None and cfg("ema-ref").method_config.kl_reference == "ema"
    assert cfg("elastic").method_config.reset_ema is True


def test_set_overrides_everything_and_is_typed():
    c = cfg("ppo", "tiny", "train.lr=2e-5", "ema_decay=0.9", "method.reset_every=5", "task.top_k=0", "whiten_advantages=false")
    assert c.train.lr == 2e-5 and c.method_config.ema_decay == 0.9 and c.method_config.reset_every == 5
    assert c.task_config.top_k == 0 and c.train.whiten_advantages is False
    assert cfg("elastic", "tiny", "method.reset_every=none").method_config.reset_every is None


def test_impossible_combinations_are_refused():
    with pytest.raises(ErbenchError, match="num_minibatches"):
        cfg("ppo", "tiny", "train.num_minibatches=100")
    with pytest.raises(ErbenchError, match="lm_context"):
        cfg("ppo", "tiny", "task.response_tokens=100")
    with pytest.raises(ErbenchError, match="first_reset_after"):
        cfg("elastic", "tiny", "method.first_reset_after=0")
    with pytest.raises(ErbenchError, match="train.device"):
        cfg("ppo", "tiny", "train.device=tpu")
