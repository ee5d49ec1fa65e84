"""skmuter: adversarially trained models that forget training points.

Scikit-learn estimators trained against adversarial inputs (PGD/FGSM) that
unlearn chosen training rows with the MUter method, with interchangeable
comparator forgetters and verification metrics.
"""

from .linear import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier

__version__ = "0.1.0"

__all__ = [
    "AdversarialLogisticRegression",
    "AdversarialNet",
    "AdversarialRidge",
    "AdversarialRidgeClassifier",
    "__version__",
]


def __getattr__(name):
    # torch and skorch are optional and slow to import: load them on first use.
    if name == "AdversarialNet":
        from .nn import AdversarialNet

        return AdversarialNet
    raise AttributeError(f"module 'skmuter' has no attribute {name!r}")
