"""``AdversarialNet``: a skorch classifier trained adversarially that forgets rows."""

from __future__ import annotations

import contextlib
import copy
import functools
import numbers

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import (
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from .._forgetting import ForgetMixin, reset_forgetting
from .._warnings import warn
from ..attacks import _Attack, resolve_attack
from ..forgetters import Forgetter, ForgetWarning, MUter
from ._attacks import TorchThreat, perturb
from ._objective import NetObjective
from ._params import flat_values, resolve_names, write_flat
from ._refit import refit_head

__all__ = ["AdversarialNet", "paper_muter"]

#: gradient tolerance (mean objective) of the exact refit: the polish and :meth:`retrain`
_REFIT_TOL = 1e-9


class _NoBool(Interval):
    """An :class:`Interval` that refuses booleans (``True`` is no count or penalty)."""

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


def paper_muter(neumann_order=100, cg_iter=10, damping=1e-4):
    """The MUter paper's forgetter for networks (replication only).

    ``MUter(total_hessian='paper')`` with the paper's network settings: a
    Neumann series of order 100 for ``(d_delta delta l)^-1``, ``cg_iter``
    conjugate-gradient iterations and damping ``1e-4`` (per row).

    Examples
    --------
    >>> from skmuter.nn import paper_muter
    >>> paper_muter(neumann_order=5).neumann_order
    5
    """
    return MUter(total_hessian="paper", neumann_order=neumann_order, cg_iter=cg_iter,
                 damping=damping)


class AdversarialNet(ForgetMixin, NeuralNetClassifier):
    """A PyTorch classifier trained against adversarial inputs that forgets rows.

    A skorch :class:`~skorch.NeuralNetClassifier` whose training step
    replaces each batch by its worst case under ``attack`` (adversarial
    training, Madry et al. 2018), and which unlearns training rows with the
    MUter method or a comparator (``forget``, ``partial_forget``).

    The module must return logits; the loss is the cross-entropy plus
    ``alpha/2 ||theta||^2`` on the parameters that forgetting updates
    (``forget_params``). After the stochastic training those parameters are
    polished to the optimum of the robust objective with everything else
    frozen (``polish=True``): every Newton-type forgetter linearises at that
    optimum, and :class:`~skmuter.forgetters.Retrain` and :meth:`retrain`
    re-solve the same problem on the remaining rows.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The network (returns logits). An instance is used as given, e.g. a
        body pre-trained on other data.
    attack : {'pgd', 'fgsm'} or skmuter.attacks.PGD / FGSM / Penalized, default='pgd'
        The threat model and attack of adversarial training (the same objects
        as the linear models use; ``attack__epsilon`` in grid searches).
        ``clip=(0, 1)`` for images. :class:`~skmuter.attacks.Penalized` (with a
        smooth body: tanh, softplus, GELU) has a unique worst case that moves
        smoothly with the parameters: the robust objective is smooth, the
        polish and :meth:`retrain` converge, and MUter's total Hessian is its
        exact Hessian. Hard-ball attacks on a network give none of this (see
        :meth:`retrain`).
    alpha : float, default=1e-4
        Ridge penalty on the forgotten parameters (one share per row).
    forget_params : 'last', 'all' or list of str, default='last'
        Parameters that forgetting updates: the last ``nn.Linear`` module
        registered (the MUter paper), every parameter, or the parameters of
        the named modules (names from ``module_.named_modules()``, or
        parameter names).
    train_params : {'all', 'forget'}, default='all'
        Parameters the optimizer trains. ``'forget'`` trains only
        ``forget_params`` on a frozen body (run in evaluation mode, so its
        batch-norm statistics never see the rows): forgetting is then complete.
        With ``'all'``, forgetting a subset of parameters leaves information
        about the rows in the others and ``forget`` warns.
    forgetter : str or skmuter.forgetters.Forgetter, default='muter'
        Unlearning method (see :mod:`skmuter.forgetters`). ``'muter'`` is the
        principled total Hessian (only the free, unsaturated coordinates of
        the perturbation enter); :func:`paper_muter` the paper's form.
    random_state : int or None, default=None
        Seeds the module's construction (when ``module`` is a class), the
        shuffling and the attack's random starts: two CPU fits with the same
        seed give the same model. The global torch generator is left as it was.
    polish : bool, default=True
        Solve for the forgotten parameters exactly after training.
    polish_max_iter : int, default=300
        Most L-BFGS iterations of the polish and of :meth:`retrain`. Each
        iteration re-runs the attack on every training row; under a
        sign-step attack the solve stops at a jump of the objective long
        before this (see :meth:`retrain`), and the cap bounds the time when it
        does not.
    max_dense_params : int, default=2048
        Curvature over at most this many forgotten parameters is a dense
        matrix factorised once; above, forgetters run matrix-free (CG).
    criterion : default=torch.nn.CrossEntropyLoss
        Only the cross-entropy on logits is supported.
    train_split : default=None
        No validation split: every row is trained on (and can be forgotten).
    **kwargs
        Any other :class:`skorch.NeuralNetClassifier` parameter (``lr``,
        ``max_epochs``, ``batch_size``, ``optimizer``, ``device``, ``module__*``).
        ``iterator_train__shuffle`` defaults to True.

    Attributes
    ----------
    module_ : torch.nn.Module
    classes_ : ndarray of shape (n_classes,)
    attack_ : PGD or FGSM
        The validated copy of ``attack`` used in training.
    forget_names_ : list of str
        Names of the parameters that forgetting updates.
    optimality_residual_ : float
        Gradient norm of the robust objective at the end of ``fit``.
    n_train_, forgotten_, forget_log_, forgetter_ :
        Forgetting state (see :class:`skmuter._forgetting.ForgetMixin`).

    Notes
    -----
    What forgetting means for a network: the forgotten parameters move to
    (an approximation of) their optimum on the remaining rows, everything
    else frozen. The exact reference, :class:`~skmuter.forgetters.Retrain`
    or :meth:`retrain`, re-solves exactly that problem to convergence; for
    the last layer on a frozen body it is convex and its optimum unique.
    Retraining every layer from scratch is a different, non-convex problem
    and is not what is compared.

    After a forget the optimizer state (which saw the rows) is reset, the
    history (losses computed on them) cleared, and the rows erased from the
    stored training data and every cache.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialNet
    >>> from skmuter.attacks import PGD
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X[:200] / 16).astype("float32"); y = y[:200]
    >>> net = AdversarialNet(
    ...     torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                         torch.nn.Linear(32, 10)),
    ...     attack=PGD(epsilon=0.05, n_steps=3, clip=(0, 1)), train_params="all",
    ...     max_epochs=5, lr=0.05, random_state=0, verbose=0).fit(X, y)
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     net = net.forget([3, 7])
    >>> net.forgotten_
    array([3, 7])
    """

    def __init__(
        self,
        module,
        *args,
        attack="pgd",
        alpha=1e-4,
        forget_params="last",
        train_params="all",
        forgetter="muter",
        random_state=None,
        polish=True,
        polish_max_iter=300,
        max_dense_params=2048,
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        **kwargs,
    ):
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(module, *args, criterion=criterion, train_split=train_split, **kwargs)
        self.attack = attack
        self.alpha = alpha
        self.forget_params = forget_params
        self.train_params = train_params
        self.forgetter = forgetter
        self.random_state = random_state
        self.polish = polish
        self.polish_max_iter = polish_max_iter
        self.max_dense_params = max_dense_params

    def set_params(self, **params):
        """Set parameters; ``attack__<name>`` sets a parameter of the attack object."""
        nested = {k[len("attack__"):]: params.pop(k) for k in list(params)
                  if k.startswith("attack__")}
        super().set_params(**params)
        if nested:
            attack = resolve_attack(self.attack)
            self.attack = attack.set_params(**nested)
        return self

    # ---- validation --------------------------------------------------------------
    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "attack": [StrOptions({"pgd", "fgsm"}), _Attack],
        "alpha": [_NoBool(numbers.Real, 0, np.inf, closed="left")],
        "train_params": [StrOptions({"all", "forget"})],
        "forgetter": [str, Forgetter],
        "polish": ["boolean"],
        "polish_max_iter": [_NoBool(numbers.Integral, 1, None, closed="left")],
        "max_dense_params": [Interval(numbers.Integral, 0, None, closed="left")],
        "random_state": [_NoBool(numbers.Integral, None, None, closed="neither"), None],
        # the module returns logits: only the cross-entropy on logits is supported
        "criterion": [Options(type, {torch.nn.CrossEntropyLoss})],
    }

    def _check_settings(self):
        """Validate the parameters (scikit-learn's constraints); the attack to train with."""
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: getattr(self, name) for name in self._parameter_constraints},
            caller_name=type(self).__name__,
        )
        return clone(resolve_attack(self.attack))

    def _validate_data(self, X, y, reset):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"X must have shape (n_samples, ...), got {X.shape}.")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinity.")
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be 1-D with one entry per row of X ({X.shape[0]}), got shape {y.shape}."
            )
        if reset:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError("the training data needs samples of at least 2 classes.")
        else:
            classes = self.classes_
        codes = np.searchsorted(classes, y)
        codes = np.clip(codes, 0, len(classes) - 1)
        if np.any(classes[codes] != y):
            raise ValueError("y has labels not seen in fit.")
        return X, codes.astype(np.int64), classes

    # ---- random state --------------------------------------------------------------
    def _seeded(self):
        if self.random_state is None:
            return contextlib.nullcontext()
        devices = []
        if str(self.device).startswith("cuda") and torch.cuda.is_available():
            devices = [torch.device(self.device).index or 0]
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(int(self.random_state))
        return stack

    # ---- initialisation ------------------------------------------------------------
    def initialize(self):
        super().initialize()
        self.forget_names_ = resolve_names(self.module_, self.forget_params)
        self._theta_init = flat_values(self.module_, self.forget_names_)
        if self.train_params == "forget":
            self.initialize_optimizer()
        return self

    def get_all_learnable_params(self):
        if self.train_params == "forget" and hasattr(self, "forget_names_"):
            keep = set(self.forget_names_)
            for name, p in self.module_.named_parameters():
                if name in keep:
                    yield name, p
            return
        yield from super().get_all_learnable_params()

    # ---- training step -------------------------------------------------------------
    def _penalty(self):
        if self.alpha == 0:
            return 0.0
        params = dict(self.module_.named_parameters())
        return 0.5 * self.alpha * sum((params[n] ** 2).sum() for n in self.forget_names_)

    def _perturb_batch(self, Xi, yi):
        """Worst case of a batch for the current module (evaluation mode)."""
        threat = self._threat
        if threat.epsilon == 0:
            return Xi
        self.module_.eval()

        def input_grad(xa):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(self.module_(xa), yi, reduction="sum")
                return torch.autograd.grad(loss, xa)[0]

        noise = torch.rand(Xi.shape, dtype=Xi.dtype, device=Xi.device) \
            if threat.random_start else None
        return perturb(threat, Xi, input_grad, noise)

    def train_step_single(self, batch, **fit_params):
        """Adversarial training step: the loss at the batch's worst case.

        Parameters
        ----------
        batch : tuple
            ``(X, y)`` from the data loader.
        **fit_params : dict
            Passed to the module's ``forward``.

        Returns
        -------
        step : dict
            ``{'loss': loss, 'y_pred': y_pred}`` at the adversarial inputs.
        """
        Xi, yi = unpack_data(batch)
        Xi = to_tensor(Xi, device=self.device)
        yi = to_tensor(yi, device=self.device)
        X_adv = self._perturb_batch(Xi, yi)
        self._set_training(self.train_params == "all")
        y_pred = self.infer(X_adv, **fit_params)
        loss = self.get_loss(y_pred, yi, X=X_adv, training=True) + self._penalty()
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    # ---- fitting ---------------------------------------------------------------------
    def fit(self, X, y, **fit_params):
        """Initialise and train the network adversarially, then polish.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs (inside ``attack.clip`` when it is set).
        y : array-like of shape (n_samples,)
            Class labels.
        **fit_params : dict
            Passed to the module's ``forward``.

        Returns
        -------
        self : AdversarialNet
            Fitted; any earlier forgetting state is discarded.
        """
        attack = self._check_settings()
        X, codes, classes = self._validate_data(X, y, reset=True)
        self._start_training(attack, X)
        with self._seeded():
            if not self.warm_start or not self.initialized_:
                self.initialize()
            super().partial_fit(X, codes, **fit_params)
        return self._finish_training(X, codes, classes)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training on ``(X, y)``; starts a new forgetting history on these rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,)
        classes : ignored
        **fit_params : dict

        Returns
        -------
        self : AdversarialNet
        """
        if not self.initialized_:
            return self.fit(X, y, **fit_params)
        attack = self._check_settings()
        X, codes, classes_ = self._validate_data(X, y, reset=False)
        self._start_training(attack, X)
        with self._seeded():
            super().partial_fit(X, codes, **fit_params)
        return self._finish_training(X, codes, classes_)

    def _start_training(self, attack, X):
        threat = TorchThreat(attack, X.shape[1:], device=self.device)
        threat.check_inside(torch.as_tensor(X[: min(len(X), 100_000)], device=self.device))
        self.attack_ = attack
        self._threat = threat

    def _finish_training(self, X, codes, classes):
        self.classes_inferred_ = classes
        self._train_X = X.copy()
        self._train_y = codes.copy()
        self._objective_ = None
        self._set_training(False)
        if self.polish:
            obj = self._objective()
            theta = obj.refit(np.arange(len(X)), self._get_thetas()[0])
            self.polish_info_ = obj.refit_info_
            self._write_theta(theta)
            self._objective_ = None
        reset_forgetting(self, len(X))
        rows = np.arange(len(X))
        self.optimality_residual_ = self._objective().gradient_residual(
            self._get_thetas()[0], rows)
        return self

    # ---- the objective ------------------------------------------------------------
    def _objective(self):
        if getattr(self, "_objective_", None) is None:
            threat = TorchThreat(self.attack_, self._train_X.shape[1:], device=self.device,
                                 dtype=torch.float64)
            self._objective_ = NetObjective(
                self.module_, self.forget_names_, self._train_X, self._train_y, threat,
                self.alpha, seed=0 if self.random_state is None else int(self.random_state),
                theta_init=self._theta_init, device=self.device,
                dense_max=self.max_dense_params,
                refitter=functools.partial(refit_head, tol=_REFIT_TOL,
                                           max_iter=self.polish_max_iter),
            )
        return self._objective_

    def training_objective(self):
        """The training problems of the fitted net: a list of one
        :class:`~skmuter.nn.NetObjective` (the same return type as every model)."""
        check_is_fitted(self, "n_train_")
        return self._forget_objectives()

    # ---- prediction --------------------------------------------------------------------
    def predict(self, X):
        """Class labels of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self.classes_[self.predict_proba(np.asarray(X, dtype=np.float32)).argmax(axis=1)]

    def robust_score(self, X, y, attack=None):
        """Accuracy on ``(X, y)`` under ``attack`` (default: the training attack).

        The attack's random start is seeded (``attack.random_state``, else
        ``random_state``), so the score is reproducible.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : array-like of shape (n_samples,)
        attack : PGD, FGSM or Penalized, default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "n_train_")
        X, codes, _ = self._validate_data(X, y, reset=False)
        attack = self.attack_ if attack is None else clone(resolve_attack(attack))
        threat = TorchThreat(attack, X.shape[1:], device=self.device)
        threat.check_inside(torch.as_tensor(X, device=self.device))
        seed = attack.random_state if isinstance(attack.random_state, numbers.Integral) else (
            self.random_state or 0)
        gen = torch.Generator().manual_seed(int(seed))
        self.module_.eval()
        correct = 0
        for start in range(0, len(X), 512):
            xb = torch.as_tensor(X[start:start + 512], device=self.device)
            yb = torch.as_tensor(codes[start:start + 512], device=self.device)

            def input_grad(xa, yb=yb):
                xa = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    loss = torch.nn.functional.cross_entropy(self.module_(xa), yb,
                                                             reduction="sum")
                    return torch.autograd.grad(loss, xa)[0]

            noise = torch.rand(xb.shape, generator=gen).to(self.device) \
                if threat.random_start else None
            xa = perturb(threat, xb, input_grad, noise)
            with torch.no_grad():
                correct += int((self.module_(xa).argmax(dim=1) == yb).sum())
        return correct / len(X)

    # ---- forgetting hooks ------------------------------------------------------------
    def _forget_objectives(self):
        return [self._objective()]

    def _get_thetas(self):
        return [flat_values(self.module_, self.forget_names_)]

    def _write_theta(self, theta):
        write_flat(self.module_, self.forget_names_, theta)

    def _set_thetas(self, thetas):
        self._write_theta(thetas[0])

    def _check_request_classes(self, kept):
        present = np.unique(self._train_y[kept])
        if len(present) < len(self.classes_):
            raise ValueError("the request would forget every remaining row of a class.")

    def _validate_request(self, indices):
        rows = super()._validate_request(indices)
        self._warn_unforgotten()
        return rows

    def _warn_unforgotten(self):
        if self.train_params == "forget":
            return
        left = [n for n, p in self.module_.named_parameters()
                if p.requires_grad and n not in set(self.forget_names_)]
        stats = [n for n, m in self.module_.named_modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats]
        if left or stats:
            what = f"parameters {left[:4]}{'...' if len(left) > 4 else ''}" if left else \
                f"batch-norm statistics of {stats[:4]}"
            warn(
                f"{what} were trained on the rows being forgotten but are not updated by "
                "forgetting, so information about the rows remains in them. Train only the "
                "forgotten parameters on a body pre-trained on other data "
                "(train_params='forget'), or forget every parameter (forget_params='all').",
                ForgetWarning,
            )

    def _purge(self, rows):
        self._train_X[rows] = 0.0
        self._train_y[rows] = 0
        if getattr(self, "_objective_", None) is not None:
            self._objective_.purge(rows)
        # The optimizer's moments and the history's losses saw the rows.
        self.initialize_optimizer()
        self.history_.clear()

    # ---- verification ------------------------------------------------------------------
    def forgetting_params(self):
        """Flat float64 vector of the parameters that forgetting updates.

        Returns
        -------
        theta : ndarray of shape (n_params,)
        """
        check_is_fitted(self, "n_train_")
        return self._get_thetas()[0]

    def remaining_rows(self):
        """Positions of the training rows not forgotten."""
        check_is_fitted(self, "n_train_")
        return np.flatnonzero(self._kept_mask())

    def retrain(self, start="init"):
        """A copy whose forgotten parameters are re-solved exactly on the remaining rows.

        Everything else stays frozen, as in forgetting: the exact reference
        of every forgetter. The forgetting history of the copy is kept.

        Parameters
        ----------
        start : {'init', 'current'} or ndarray, default='init'
            Start from the initial values of the parameters (the
            initialisation recipe, which never saw data), from the current
            ones, or from a given vector (e.g. ``forgetting_params()`` of the
            model before forgetting). The last layer on a frozen body is
            convex: all reach the same optimum up to the solver's tolerance.

        Returns
        -------
        net : AdversarialNet
        """
        check_is_fitted(self, "n_train_")
        if isinstance(start, str):
            if start not in ("init", "current"):
                raise ValueError(f"start must be 'init', 'current' or a vector, got {start!r}.")
            theta0 = None if start == "init" else self._get_thetas()[0]
        else:
            theta0 = np.asarray(start, dtype=np.float64)
            if theta0.shape != (self._objective().n_params,):
                raise ValueError(f"start must have shape ({self._objective().n_params},), "
                                 f"got {theta0.shape}.")
        new = copy.deepcopy(self)
        theta = new._objective().refit(new.remaining_rows(), theta0)
        new._write_theta(theta)
        new.retrain_info_ = new._objective().refit_info_
        return new

    def gradient_residual(self):
        """Norm of the gradient of the remaining robust objective (mean, penalty included).

        Returns
        -------
        residual : float
            0 at the exact retrain (up to its tolerance).
        """
        check_is_fitted(self, "n_train_")
        return self._objective().gradient_residual(self._get_thetas()[0], self.remaining_rows())

    # ---- persistence ------------------------------------------------------------------
    def __getstate__(self):
        state = super().__getstate__()
        # Caches with device tensors are rebuilt on demand.
        state["_objective_"] = None
        state.pop("_threat", None)
        return state

    def __setstate__(self, state):
        state.setdefault("polish_max_iter", 300)  # pickled before the parameter existed
        super().__setstate__(state)
        if "attack_" in self.__dict__ and getattr(self, "_train_X", None) is not None:
            self._threat = TorchThreat(self.attack_, self._train_X.shape[1:], device=self.device)
