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
    check(estimator)
