"""erbench's BLEU_En drift as an `evaluate` module: load it with evaluate.load(erbench.metrics.hf_path(...))."""

import datasets
import evaluate
from erbench.metrics.hf import metric_info
from erbench.metrics.bleu import corpus_bleu, sil_bleu

_DESCRIPTION = """BLEU_En, the translation game's language drift: corpus BLEU of the English pivot messages against the
human English. `bleu` is erbench's number (sacrebleu, 13a tokenisation, on the text as given: erbench lower-cases and
detokenises first); `bleu_sil` the SIL convention of Lu et al. 2020 (Moses-tokenised, no smoothing)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the pivot English messages (list of str).
    references: the human English, one per prediction (list of str).
Returns:
    bleu, bleu_sil: floats in [0, 100].
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BleuDrift(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION,
                           {"predictions": datasets.Value("string"), "references": datasets.Value("string")})

    def _compute(self, predictions, references):
        return {"bleu": corpus_bleu(predictions, references), "bleu_sil": sil_bleu(predictions, references, "en")}
