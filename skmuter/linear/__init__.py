"""Adversarially trained linear estimators."""

from ._base import BaseAdversarialLinear
from ._estimators import (
    AdversarialLogisticRegression,
    AdversarialRidge,
    AdversarialRidgeClassifier,
)
from ._objective import LinearObjective

__all__ = [
    "AdversarialLogisticRegression",
    "AdversarialRidge",
    "AdversarialRidgeClassifier",
    "BaseAdversarialLinear",
    "LinearObjective",
]
