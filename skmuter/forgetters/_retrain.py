"""Retrain: the exact reference, refitting on the remaining rows."""

from __future__ import annotations

import time

import numpy as np

from ._base import Forgetter


class Retrain(Forgetter):
    """Forget by refitting the model on the remaining rows.

    The reference every other forgetter is judged against: the same robust
    objective solved again, exactly, on the rows still in the model.

    Parameters
    ----------
    warm_start : bool, default=False
        Start the refit from the current parameters instead of from scratch
        (faster; the optimum is the same because the objective is convex for
        linear models).
    """

    name = "retrain"
    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "warm_start": ["boolean"],
    }

    def __init__(self, warm_start=False):
        self.warm_start = warm_start

    def prepare(self, objective, theta, rows):
        self._validate_params()
        self.theta_ = np.asarray(theta, dtype=np.float64).copy()
        return self

    def forget(self, objective, removed, remaining):
        t0 = time.perf_counter()
        theta = objective.refit(remaining, self.theta_ if self.warm_start else None)
        self.theta_ = theta
        return theta, {"update_time": 0.0, "solve_time": time.perf_counter() - t0}
