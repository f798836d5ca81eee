"""erbench: a benchmark suite for the reward/drift trade-off of RL fine-tuning (Elastic Reset)."""

from erbench import cpu

cpu.pin()  # before torch or numpy load: they read these switches once (erbench/cpu.py)

__version__ = "0.1.0"
