"""Adversarially trained PyTorch networks that forget (skorch estimators).

:class:`AdversarialNet` trains a network against PGD/FGSM inputs and
unlearns training rows with MUter or a comparator forgetter; its forgetters
see the network through :class:`NetObjective` (per-sample gradients and
Hessian-vector products with ``torch.func``).
"""

from ._net import AdversarialNet, paper_muter
from ._objective import NetObjective

__all__ = ["AdversarialNet", "NetObjective", "paper_muter"]
