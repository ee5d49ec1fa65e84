from sklearn.utils.estimator_checks import parametrize_with_checks

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier


@parametrize_with_checks(
    [AdversarialLogisticRegression(), AdversarialRidgeClassifier(), AdversarialRidge()]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
