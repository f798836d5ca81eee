"""erbench's metrics as `evaluate` modules: each loads by path with the hubs switched off and gives erbench's number."""

import tarfile

import pytest

evaluate = pytest.importorskip("evaluate")

import torch  # noqa: E402
from conftest import DATA_DIR  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from erbench.errors import ErbenchError  # noqa: E402
from erbench.metrics import hf_path  # noqa: E402
from erbench.metrics.bleu import corpus_bleu, sil_bleu  # noqa: E402
from erbench.metrics.perplexity import perplexity  # noqa: E402
from erbench.rl.kl import exact_kl  # noqa: E402
from erbench.tasks.imdb import REVIEW_PATH, clean  # noqa: E402
from erbench.tasks.translation import read_split  # noqa: E402


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """evaluate.load by path, offline; the copied scripts and metric data go to a temporary folder, not ~/.cache.
    evaluate 0.4 reads only its own HF_EVALUATE_OFFLINE, at import, so that flag is set on its config as well."""
    cache = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
            mp.setenv(name, "1")
        mp.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        mp.setattr(evaluate.config, "HF_MODULES_CACHE", cache / "modules")
        yield lambda name: evaluate.load(hf_path(name), cache_dir=str(cache / "data"))


def imdb_reviews(n: int) -> list[str]:
    """The first n reviews of the tarball (test/neg), read without unpacking the rest."""
    reviews = []
    with tarfile.open(DATA_DIR / "imdb" / "aclImdb_v1.tar.gz", "r:gz") as archive:
        for member in archive:
            if REVIEW_PATH.search(member.name):
                reviews.append(clean(archive.extractfile(member).read().decode("utf-8")))
                if len(reviews) == n:
                    return reviews


def test_drift_perplexity_is_erbenchs_sliding_window_perplexity(load, tmp_path):
    folder = DATA_DIR / "gpt2-tokenizer"
    tokenizer = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path / "lm")
    texts = imdb_reviews(2)  # ~500 tokens: GPT-2's 50k-word output layer dominates the time
    tokens = tokenizer.encode("\n\n".join(texts)).ids
    metric = load("drift_perplexity")

    expected = perplexity(model, tokens, 64)
    result = metric.compute(predictions=texts, model=str(tmp_path / "lm"), tokenizer=str(tmp_path / "tokenizer.json"))
    assert result == {"perplexity": pytest.approx(expected, rel=1e-5)}
    # loaded objects, the context, the stride and the per-window mean go through to erbench's function
    expected = perplexity(model, tokens, 32, stride=24, window_mean=True)
    result = metric.compute(predictions=texts, model=model, tokenizer=tokenizer, context=32, stride=24,
                            window_mean=True)
    assert result["perplexity"] == pytest.approx(expected, rel=1e-5) and expected > 1000  # untrained: ~ the vocabulary


def test_exact_kl_is_erbenchs_masked_sum_over_positions_mean_over_sequences(load):
    torch.manual_seed(0)
    logits, ref_logits = torch.randn(4, 6, 11), torch.randn(4, 6, 11)
    mask = (torch.rand(4, 6) > 0.3).float()
    per_sequence = (exact_kl(logits, ref_logits) * mask).sum(1)
    metric = load("exact_kl")

    result = metric.compute(predictions=logits.numpy(), references=ref_logits.numpy(), mask=mask.numpy())
    assert result == {"kl": pytest.approx(per_sequence.mean().item(), rel=1e-6),
                      "kl_per_token": pytest.approx((per_sequence.sum() / mask.sum()).item(), rel=1e-6)}
    # sequences of different lengths, no mask: every position counts
    ragged = metric.compute(predictions=[logits[0, :2].tolist(), logits[1].tolist()],
                            references=[ref_logits[0, :2].tolist(), ref_logits[1].tolist()])
    unmasked = [exact_kl(logits[0, :2], ref_logits[0, :2]).sum(), exact_kl(logits[1], ref_logits[1]).sum()]
    assert ragged["kl"] == pytest.approx(sum(unmasked).item() / 2, rel=1e-6)


def test_bleu_drift_is_erbenchs_bleu_en_both_conventions(load):
    (english,) = read_split((DATA_DIR / "multi30k" / "task1" / "raw" / "val.en.gz",), 1014)  # normalised, as erbench
    references = english[:20]
    # drift-like hypotheses: every other line loses its last word, every third has two words swapped
    hypotheses = []
    for i, line in enumerate(references):
        words = line.split()
        if i % 2:
            words = words[:-1]
        if i % 3 == 0:
            words[0], words[1] = words[1], words[0]
        hypotheses.append(" ".join(words))

    result = load("bleu_drift").compute(predictions=hypotheses, references=references)
    assert result == {"bleu": pytest.approx(corpus_bleu(hypotheses, references)),
                      "bleu_sil": pytest.approx(sil_bleu(hypotheses, references, "en"))}
    assert 20 < result["bleu"] < 100


def test_an_unknown_module_name_is_a_one_line_error_listing_the_modules():
    with pytest.raises(ErbenchError) as error:
        hf_path("nope")
    message = str(error.value)
    assert "\n" not in message and "'nope'" in message
    assert all(name in message for name in ("bleu_drift", "drift_perplexity", "exact_kl"))
