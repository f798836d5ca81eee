"""erbench's exact KL(pi || pi_ref) as an `evaluate` module: evaluate.load(erbench.metrics.hf_path(...))."""

import datasets
import evaluate
import torch
from erbench.metrics.hf import metric_info
from erbench.rl.kl import exact_kl

_DESCRIPTION = """Exact KL(pi || pi_ref) between a policy and a reference model from their logits, summed over the full
vocabulary at each position (never negative), summed over each sequence's (masked) positions, then averaged over
sequences: erbench's `kl_to_init`. `kl_per_token` divides the total by the number of scored positions."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the policy's logits, one [T, V] array per sequence (T may differ between sequences).
    references: the reference model's logits, same shapes.
    mask: optional, one [T] array of 0/1 per sequence: the positions that count (e.g. the response).
Returns:
    kl: mean over sequences of the summed KL; kl_per_token: total KL / scored positions.
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactKL(evaluate.Metric):
    def _info(self):
        logits = datasets.Sequence(datasets.Sequence(datasets.Value("float32")))  # exact_kl computes in float32
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, {"predictions": logits, "references": logits})

    def _compute(self, predictions, references, mask=None):
        per_sequence, scored = [], 0
        for i, (logits, ref_logits) in enumerate(zip(predictions, references)):
            kl = exact_kl(torch.tensor(logits), torch.tensor(ref_logits))
            weights = torch.ones_like(kl) if mask is None else torch.as_tensor(mask[i], dtype=kl.dtype)
            per_sequence.append((kl * weights).sum())
            scored += weights.sum().item()
        total = torch.stack(per_sequence)
        return {"kl": total.mean().item(), "kl_per_token": total.sum().item() / max(scored, 1)}
