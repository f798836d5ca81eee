"""IMDB with a user-supplied reward: any `module:function` that maps a list of texts to a list of floats
(`--set task.reward_function=my_module:my_reward`); by default a small sentiment lexicon below.

The task is erbench's IMDB task with its reward swapped, so it shares IMDB's prepared LM (the same cache folder).
"""

import importlib
import re
from dataclasses import dataclass

from erbench.errors import ErbenchError
from erbench.tasks.imdb import ImdbConfig, ImdbTask

POSITIVE = {"good", "great", "best", "love", "loved", "excellent", "wonderful", "beautiful", "fun", "perfect", "enjoy"}
NEGATIVE = {"bad", "worst", "awful", "boring", "waste", "poor", "terrible", "stupid", "horrible", "dull", "hate"}


def lexicon_sentiment(texts: list[str]) -> list[float]:
    """The share of positive among the sentiment words of each text (0.5 when it has none)."""
    scores = []
    for text in texts:
        words = re.findall(r"[a-z']+", text.lower())
        good, bad = sum(w in POSITIVE for w in words), sum(w in NEGATIVE for w in words)
        scores.append((good + 0.5) / (good + bad + 1.0))
    return scores


@dataclass(frozen=True)
class LexiconImdbConfig(ImdbConfig):
    reward_function: str = ""  # "module:function" texts -> floats; empty: lexicon_sentiment


class LexiconImdbTask(ImdbTask):
    config_class = LexiconImdbConfig

    def load_policy(self):
        model = super().load_policy()
        self.reward = self.load_function(self.cfg.reward_function) if self.cfg.reward_function else lexicon_sentiment
        return model

    @staticmethod
    def load_function(target: str):
        module, _, name = target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ErbenchError(f"cannot load task.reward_function={target!r}: {e}", "give an importable module:function") from None
