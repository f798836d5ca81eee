"""erbench's drift perplexity as an `evaluate` module: load it with evaluate.load(erbench.metrics.hf_path(...))."""

import os

import datasets
import evaluate
from erbench.metrics.hf import metric_info
from erbench.metrics.perplexity import perplexity

_DESCRIPTION = """Perplexity of a causal LM on human text, the drift metric of RL4LMs and Elastic Reset: the texts are
joined with "\\n\\n" and tokenized once, windows of the model's context slide by half of it (`stride`), and each token
is scored once, with the rest of its window as context. With `window_mean`, exp of the mean of the windows' mean NLLs
(HF's perplexity guide, the StackLLaMA code)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the texts (list of str).
    model: a causal LM folder (save_pretrained) or a loaded transformers causal LM.
    tokenizer: a tokenizer.json file, a tokenizer folder (save_pretrained), or a loaded tokenizer.
    context: window length, default model.config.n_positions or max_position_embeddings.
    stride: window step, default context // 2.
    window_mean: average per window (see above), default False.
    device: where to run, default the model's device (cpu for a folder).
Returns:
    perplexity: float.
"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DriftPerplexity(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, {"predictions": datasets.Value("string")})

    def _compute(self, predictions, model, tokenizer, context=None, stride=None, window_mean=False, device=None):
        from tokenizers import Tokenizer
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, (str, os.PathLike)):
            model = AutoModelForCausalLM.from_pretrained(model).to(device or "cpu")
        if isinstance(tokenizer, (str, os.PathLike)):
            is_file = os.path.isfile(tokenizer)
            tokenizer = Tokenizer.from_file(str(tokenizer)) if is_file else AutoTokenizer.from_pretrained(tokenizer)
        # a transformers tokenizer encodes through its fast backend, as erbench's tasks do; a slow one returns ids
        encoded = getattr(tokenizer, "backend_tokenizer", tokenizer).encode("\n\n".join(predictions))
        token_ids = getattr(encoded, "ids", encoded)
        context = context or getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        device = device or next(model.parameters()).device
        return {"perplexity": perplexity(model, token_ids, context, stride, device=device, window_mean=window_mean)}
