"""erbench: a benchmark suite for the reward/drift trade-off of RL fine-tuning (Elastic Reset)."""

__version__ = "0.1.0"
