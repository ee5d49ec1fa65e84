"""The paper's protocol: datasets, threat models, the models compared, removal sizes.

The MUter paper's Section 5 fixes, per dataset, an l_inf threat inside [0, 1]
and a PGD or FGSM recipe (:data:`PROTOCOLS`); :func:`paper_estimator` and
:func:`paper_attack` build its models (no intercept, ``alpha=1e-4``) and
:func:`parse_removals` reads removal sizes given as counts or percentages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..attacks import FGSM, PGD
from ..forgetters import FORGETTER_NAMES

#: the forgetters compared by default (the exact retrain is always the reference)
DEFAULT_FORGETTERS = tuple(name for name in FORGETTER_NAMES if name != "retrain")
#: removal sizes of a default run: counts, or percentages of the training rows
DEFAULT_REMOVALS = "1,5,10,1%,2%"
DATASETS = ("digits", "mnist-b", "covtype")
MODELS = ("logistic", "ridge")
ATTACKS = ("fgsm", "pgd")

#: method name of the reference rows: the exact retrain on the remaining rows
RETRAIN = "retrain"
#: method name of the rows of the fitted model left as it is
DO_NOTHING = "do-nothing"


@dataclass(frozen=True)
class Protocol:
    """Threat model and attack recipe of one dataset (the MUter paper's Section 5).

    Parameters
    ----------
    epsilon : float
        Radius of the l_inf ball.
    pgd_step : float
        PGD step size.
    pgd_steps : int
        PGD iterations.
    clip : tuple of float
        Input domain.
    repeats : int
        Default number of repeats of a benchmark run, chosen so that the
        default run fits its time budget on a 2-core CPU machine (5 minutes
        for MNIST-b, 15 for Covtype).
    """

    epsilon: float
    pgd_step: float
    pgd_steps: int
    clip: tuple = (0.0, 1.0)
    repeats: int = 3


#: protocols of the datasets; ``digits`` is an offline stand-in for MNIST-b
PROTOCOLS = {
    "digits": Protocol(epsilon=64 / 255, pgd_step=8 / 255, pgd_steps=15, repeats=5),
    "mnist-b": Protocol(epsilon=64 / 255, pgd_step=8 / 255, pgd_steps=15, repeats=2),
    "covtype": Protocol(epsilon=4 / 255, pgd_step=0.004, pgd_steps=7, repeats=2),
}


def _check_choice(kind, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}.")


# ---- the paper's set-up -------------------------------------------------------------
def load_dataset(name: str, path=None):
    """Return ``X_train, X_test, y_train, y_test`` of a benchmark dataset.

    Parameters
    ----------
    name : {'digits', 'mnist-b', 'covtype'}
        ``'digits'``: scikit-learn's bundled 8x8 digits, 1 vs 7, scaled to
        [0, 1], a stratified 75/25 split (offline, a few hundred rows).
        The others: :func:`skmuter.datasets.load_mnist_b` and
        :func:`skmuter.datasets.load_covtype_binary`.
    path : str or path-like, default=None
        Local data file or directory (ignored for ``'digits'``).

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray

    Examples
    --------
    >>> from skmuter.benchmark import load_dataset
    >>> X_train, X_test, y_train, y_test = load_dataset("digits")
    >>> X_train.shape, sorted(set(y_train.tolist()))
    ((270, 64), [1, 7])
    """
    _check_choice("dataset", name, DATASETS)
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        keep = np.isin(y, (1, 7))
        return train_test_split(X[keep] / 16.0, y[keep], test_size=0.25, stratify=y[keep],
                                random_state=0)
    from .. import datasets

    if name == "mnist-b":
        return datasets.load_mnist_b(path)
    return datasets.load_covtype_binary(path)


def paper_attack(dataset: str, attack: str = "fgsm", random_state=0):
    """The attack of the paper's protocol for ``dataset``.

    Parameters
    ----------
    dataset : {'digits', 'mnist-b', 'covtype'}
    attack : {'fgsm', 'pgd'}, default='fgsm'
        ``'fgsm'`` is the paper's variant: a random start then one step of
        size epsilon.
    random_state : int, default=0
        Seed of the random start.

    Returns
    -------
    attack : PGD or FGSM

    Examples
    --------
    >>> from skmuter.benchmark import paper_attack
    >>> paper_attack("covtype", "pgd").n_steps
    7
    """
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("attack", attack, ATTACKS)
    p = PROTOCOLS[dataset]
    if attack == "pgd":
        return PGD(epsilon=p.epsilon, step_size=p.pgd_step, n_steps=p.pgd_steps,
                   random_start=True, clip=p.clip, random_state=random_state)
    return FGSM(epsilon=p.epsilon, clip=p.clip, random_start=True, random_state=random_state)


def paper_estimator(model: str = "logistic", attack=None, alpha: float = 1e-4):
    """An unfitted linear model of the paper's protocol (no intercept, exact solver).

    Parameters
    ----------
    model : {'logistic', 'ridge'}, default='logistic'
        ``'ridge'`` is the ridge classifier (the paper's "RR" rows).
    attack : attack object, default=None
        Threat model; ``None`` uses the MNIST-b one.
    alpha : float, default=1e-4
        L2 penalty (the paper's lambda).

    Returns
    -------
    estimator : AdversarialLogisticRegression or AdversarialRidgeClassifier

    Examples
    --------
    >>> from skmuter.benchmark import paper_estimator
    >>> paper_estimator("ridge").get_params()["fit_intercept"]
    False
    """
    from ..linear import AdversarialLogisticRegression, AdversarialRidgeClassifier

    _check_choice("model", model, MODELS)
    cls = AdversarialLogisticRegression if model == "logistic" else AdversarialRidgeClassifier
    if attack is None:
        attack = paper_attack("mnist-b")
    return cls(attack=attack, alpha=alpha, fit_intercept=False, solver="exact")


_REMOVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def parse_removals(spec, n_train: int):
    """Turn a removal specification into ``(label, count)`` pairs.

    Parameters
    ----------
    spec : str or sequence
        Comma-separated counts and percentages of the training rows, e.g.
        ``"1,5,10,1%,2%"``, or a sequence of such items (ints allowed).
    n_train : int
        Number of training rows.

    Returns
    -------
    removals : list of (str, int)
        Label (``'1%'`` stays ``'1%'``) and row count, in the given order,
        duplicates of the same count dropped.

    Raises
    ------
    ValueError
        For an item that is not a positive count or percentage, and for a
        count that would leave fewer than 2 training rows.

    Examples
    --------
    >>> from skmuter.benchmark import parse_removals
    >>> parse_removals("1,5,1%", 13007)
    [('1', 1), ('5', 5), ('1%', 130)]
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out, seen = [], set()
    for item in items:
        text = str(item).strip()
        m = _REMOVAL.match(text)
        if not m:
            raise ValueError(f"bad removal size {text!r}: use counts and percentages such as "
                             "1,5,10,1%,2%.")
        value, percent = float(m.group(1)), m.group(2) == "%"
        if percent:
            count = round(value / 100.0 * n_train)
        elif value != int(value):
            raise ValueError(f"bad removal size {text!r}: a count must be a whole number.")
        else:
            count = int(value)
        if count < 1:
            raise ValueError(f"removal size {text!r} is less than one row of {n_train}.")
        if count > n_train - 2:
            raise ValueError(f"removal size {text!r} ({count} rows) is larger than the data "
                             f"allows: {n_train} training rows.")
        if count not in seen:
            seen.add(count)
            out.append((text, count))
    if not out:
        raise ValueError("no removal sizes given.")
    return out


def removal_label(label: str, count: int) -> str:
    """Column label of a removal size: ``'1%'`` becomes ``'1% (130)'``, counts stay."""
    return label if not label.endswith("%") else f"{label} ({count})"
