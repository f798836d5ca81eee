"""Corpus BLEU two ways (paper.md §3.1.4, §3.1.6): sacrebleu 13a on lower-cased detokenised text (erbench's
number), and the SIL convention (multi-bleu style: Moses-tokenised text, no further tokenisation, no
smoothing) so results sit beside Lu et al. 2020 Table 2."""

import functools

import sacrebleu


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    return sacrebleu.corpus_bleu(hypotheses, [references], tokenize="13a").score


@functools.lru_cache(maxsize=4)
def moses_tokenizer(lang: str):
    from sacremoses import MosesTokenizer

    return MosesTokenizer(lang=lang)


def sil_bleu(hypotheses: list[str], references: list[str], lang: str) -> float:
    tokenizer = moses_tokenizer(lang)
    tokenize = functools.partial(tokenizer.tokenize, escape=False, return_str=True)
    return sacrebleu.corpus_bleu([tokenize(h) for h in hypotheses], [[tokenize(r) for r in references]],
                                 tokenize="none", smooth_method="none", force=True).score


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Smoothed sentence BLEU in [0, 1] (the game's optional reward)."""
    return sacrebleu.sentence_bleu(hypothesis, [reference], tokenize="13a").score / 100
