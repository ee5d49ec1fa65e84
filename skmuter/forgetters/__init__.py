"""Forgetters: interchangeable unlearning methods for every skmuter model.

Pass one as the ``forgetter`` parameter of an estimator, as an object or by
its short name:

========================  ===============================================
name                      object
========================  ===============================================
``'muter'``               ``MUter()``
``'muter-paper'``         ``MUter(total_hessian='paper', linearization='fitted')``
``'newton'``              ``Newton()``
``'newton-delta'``        ``Newton(adversarial=True)``
``'influence'``           ``Influence()``
``'influence-delta'``     ``Influence(adversarial=True)``
``'fisher'``              ``Fisher()``
``'fisher-delta'``        ``Fisher(adversarial=True)``
``'retrain'``             ``Retrain()``
========================  ===============================================
"""

from .._warnings import ForgetWarning
from ._base import Forgetter
from ._newton import Fisher, Influence, MUter, Newton
from ._retrain import Retrain

__all__ = [
    "FORGETTER_NAMES",
    "Fisher",
    "ForgetWarning",
    "Forgetter",
    "Influence",
    "MUter",
    "Newton",
    "Retrain",
    "resolve_forgetter",
]

_FACTORIES = {
    "muter": lambda: MUter(),
    "muter-paper": lambda: MUter(total_hessian="paper", linearization="fitted"),
    "newton": lambda: Newton(),
    "newton-delta": lambda: Newton(adversarial=True),
    "influence": lambda: Influence(),
    "influence-delta": lambda: Influence(adversarial=True),
    "fisher": lambda: Fisher(),
    "fisher-delta": lambda: Fisher(adversarial=True),
    "retrain": lambda: Retrain(),
}

#: the short names accepted by ``forgetter=``
FORGETTER_NAMES = tuple(_FACTORIES)


def resolve_forgetter(forgetter):
    """Return a forgetter object for a short name or a forgetter object.

    Examples
    --------
    >>> from skmuter.forgetters import resolve_forgetter
    >>> resolve_forgetter("newton-delta")
    Newton(adversarial=True)
    """
    if isinstance(forgetter, str):
        try:
            return _FACTORIES[forgetter.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown forgetter {forgetter!r}; use one of {', '.join(FORGETTER_NAMES)} "
                "or a skmuter.forgetters object."
            ) from None
    if isinstance(forgetter, Forgetter):
        return forgetter
    raise TypeError(
        "forgetter must be a name or a skmuter.forgetters.Forgetter, got "
        f"{type(forgetter).__name__}."
    )
