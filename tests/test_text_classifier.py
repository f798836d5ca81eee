"""IMDB's local reward classifiers are cached as data: the same probabilities back, and nothing in the cache runs code."""

import pickle

import numpy as np
import pytest
import torch

from erbench.errors import ErbenchError
from erbench.models.text_classifier import load_classifier, save_classifier, sentiment_classifier
from erbench.tasks.imdb import LOCAL_CLASSIFIERS, ImdbConfig, ImdbTask

GOOD, BAD, FILLER = ["great", "wonderful", "moving", "superb"], ["awful", "boring", "dull", "worst"], ["the", "film", "plot", "actor", "scene"]


def reviews(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Short reviews whose label shows in a few of their words, among common ones."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).tolist()
    texts = [" ".join(rng.choice((GOOD if y else BAD) * 2 + FILLER + GOOD[:1] + BAD[:1], 12)) for y in labels]
    return texts, labels


@pytest.fixture(scope="module")
def fitted():
    texts, labels = reviews(300, 0)
    return {kind: sentiment_classifier(kind).fit(texts, labels) for kind in LOCAL_CLASSIFIERS}


@pytest.mark.parametrize("kind", LOCAL_CLASSIFIERS)
def test_a_saved_classifier_gives_the_same_probabilities_back(fitted, kind, tmp_path):
    save_classifier(kind, fitted[kind], tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as stored:  # plain arrays only: no object (pickled) entries
        assert all(stored[key].dtype != object for key in stored.files)
    held_out, _ = reviews(50, 1)
    np.testing.assert_array_equal(load_classifier(kind, tmp_path / "c.npz").predict_proba(held_out),
                                  fitted[kind].predict_proba(held_out))


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.unlink(), "cannot read"),
    (lambda path: path.write_bytes(path.read_bytes()[:200]), "cannot read"),
    (lambda path: path.write_bytes(pickle.dumps({"terms": 1})), "cannot read"),
    (lambda path: np.savez(path, format=np.array("erbench.text_classifier/1"), kind=np.array("naive-bayes")), "is not an erbench tfidf"),
    (lambda path: np.savez(path, format=np.array("erbench.text_classifier/1"), kind=np.array("tfidf")), "lacks"),
])
def test_a_damaged_classifier_is_one_error_naming_prepare(fitted, tmp_path, damage, message):
    path = tmp_path / "c.npz"
    save_classifier("tfidf", fitted["tfidf"], path)
    damage(path)
    with pytest.raises(ErbenchError, match=message) as error:
        load_classifier("tfidf", path)
    assert "erbench prepare imdb --force" in error.value.fix


def test_a_cache_with_a_pickled_classifier_is_refused_not_unpickled(fitted, tmp_path):
    task = ImdbTask(ImdbConfig(), None, tmp_path, torch.device("cpu"))
    task.asset_dir.mkdir(parents=True)
    (task.asset_dir / "reward.pkl").write_bytes(pickle.dumps(fitted["tfidf"]))
    with pytest.raises(ErbenchError, match="pickled classifier") as error:
        task.load_reward("tfidf")
    assert "prepare imdb --force" in error.value.fix
