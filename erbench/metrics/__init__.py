"""erbench's drift metrics; hf/ holds them as Hugging Face `evaluate` modules for other pipelines."""

from pathlib import Path

HF_MODULES = ("bleu_drift", "drift_perplexity", "exact_kl")


def hf_path(name: str) -> str:
    """The folder of an `evaluate` module, for `evaluate.load(hf_path(name))`: loads by path, so offline."""
    from erbench.errors import ErbenchError

    if name not in HF_MODULES:
        raise ErbenchError(f"no evaluate module named {name!r}", f"choose one of {', '.join(HF_MODULES)}")
    return str(Path(__file__).parent / "hf" / name)
