"""The local sentiment classifiers `prepare` trains (IMDB's tiny/small proxy and gold rewards), stored as data.

A pickle in a shared cache runs the code of whoever wrote it, so the fitted state is saved as arrays in an .npz
(read with allow_pickle=False) and put back into an unfitted pipeline built by the same code that trained it:
the hyper-parameters come from here, only the learned numbers from the cache."""

import zipfile
from pathlib import Path

import numpy as np

from erbench.errors import ErbenchError

FORMAT = "erbench.text_classifier/1"


def sentiment_classifier(kind: str):
    """An untrained scikit-learn pipeline: the proxy reward ("tfidf") or the gold reward ("naive-bayes")."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    if kind == "tfidf":
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), max_features=200_000, sublinear_tf=True),
                             LogisticRegression(C=4.0, max_iter=1000))
    # A generative model on presence features: its errors differ from the proxy's. Naive Bayes' own
    # probabilities saturate at 0 and 1; Platt scaling (3-fold) makes them a graded reward.
    return make_pipeline(CountVectorizer(ngram_range=(1, 3), binary=True, min_df=2),
                         CalibratedClassifierCV(MultinomialNB(alpha=0.5), method="sigmoid", cv=3))


def fitted_arrays(kind: str, pipeline) -> dict[str, np.ndarray]:
    """The learned numbers of a fitted `sentiment_classifier(kind)`."""
    vectorizer, model = pipeline[0], pipeline[-1]
    vocabulary = vectorizer.vocabulary_
    arrays = {"format": np.array(FORMAT), "kind": np.array(kind),
              "terms": np.array(sorted(vocabulary, key=vocabulary.get)), "classes": model.classes_}
    if kind == "tfidf":
        return {**arrays, "idf": vectorizer.idf_, "coef": model.coef_, "intercept": model.intercept_}
    for fold, calibrated in enumerate(model.calibrated_classifiers_):
        [calibrator] = calibrated.calibrators  # binary: one sigmoid on the positive class's probability
        arrays |= {f"fold{fold}.feature_log_prob": calibrated.estimator.feature_log_prob_,
                   f"fold{fold}.class_log_prior": calibrated.estimator.class_log_prior_,
                   f"fold{fold}.sigmoid": np.array([calibrator.a_, calibrator.b_])}
    return arrays


def from_arrays(kind: str, arrays) -> object:
    """`sentiment_classifier(kind)` with the fitted state of `fitted_arrays` put back."""
    from sklearn.calibration import _CalibratedClassifier, _SigmoidCalibration
    from sklearn.naive_bayes import MultinomialNB

    pipeline = sentiment_classifier(kind)
    vectorizer, model = pipeline[0], pipeline[-1]
    terms = arrays["terms"].tolist()
    vectorizer.vocabulary_ = dict(zip(terms, range(len(terms))))
    model.classes_, model.n_features_in_ = arrays["classes"], len(terms)
    if kind == "tfidf":
        vectorizer.idf_ = arrays["idf"]
        model.coef_, model.intercept_ = arrays["coef"], arrays["intercept"]
        return pipeline
    model.calibrated_classifiers_ = []
    for fold in range(sum(key.endswith(".sigmoid") for key in arrays)):
        estimator = MultinomialNB(alpha=model.estimator.alpha)
        estimator.classes_, estimator.n_features_in_ = arrays["classes"], len(terms)
        estimator.feature_log_prob_ = arrays[f"fold{fold}.feature_log_prob"]
        estimator.class_log_prior_ = arrays[f"fold{fold}.class_log_prior"]
        calibrator = _SigmoidCalibration()
        calibrator.a_, calibrator.b_ = arrays[f"fold{fold}.sigmoid"].tolist()
        model.calibrated_classifiers_.append(_CalibratedClassifier(estimator, [calibrator], classes=arrays["classes"],
                                                                   method="sigmoid"))
    return pipeline


def save_classifier(kind: str, pipeline, path: Path) -> None:
    np.savez_compressed(path, **fitted_arrays(kind, pipeline))


def load_classifier(kind: str, path: Path):
    """A saved classifier; a file that is missing, damaged, of another kind or format is one error naming `prepare`."""
    fix = "run `erbench prepare imdb --force` to rebuild the cached classifiers"
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # missing; not an .npz; truncated
        raise ErbenchError(f"cannot read the {kind} classifier {path}: {e}", fix) from None
    if str(arrays.get("format")) != FORMAT or str(arrays.get("kind")) != kind:
        raise ErbenchError(f"{path} is not an erbench {kind} classifier ({FORMAT})", fix)
    try:
        return from_arrays(kind, arrays)
    except KeyError as e:
        raise ErbenchError(f"{path} lacks {e} of the {kind} classifier", fix) from None
