import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.certified import CertifiedRemoval


@parametrize_with_checks(
    [
        AdversarialLogisticRegression(),
        AdversarialRidgeClassifier(),
        AdversarialRidge(),
        AdversarialLogisticRegression(certified=CertifiedRemoval(), random_state=0),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    name = getattr(check, "func", check).__name__
    if name.startswith("check_sample_weight_equivalence") and estimator._loss == "squared":
        # The check's random, unscaled data with alpha=1e-4 leave the robust squared
        # loss badly conditioned: the fit stops short of tol, so its 1e-7 comparison
        # fails (and takes a minute). tests/test_sparse_weights.py checks weights
        # against duplication on well-conditioned data instead.
        pytest.skip("robust squared loss ill-conditioned on the check's data")
    check(estimator)
