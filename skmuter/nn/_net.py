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
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import unpack_data
from skorch.utils import data_from_dataset, to_numpy, to_tensor
from torch.utils.data import Dataset as TorchDataset

from .._forgetting import ForgetMixin, atomic_fit, reset_forgetting
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

#: numpy dtype of the inputs for a module of each torch float dtype (others: float32)
_NUMPY_FLOATS = {torch.float16: np.float16, torch.float32: np.float32,
                 torch.float64: np.float64}


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

    A skorch :class:`~skorch.classifier.NeuralNetClassifier` whose training step
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
        A skorch split (``skorch.dataset.ValidSplit(5)``) holds rows out of the
        stochastic training only, to score epochs (``valid_loss``,
        ``valid_acc``, ``EpochScoring`` callbacks); the polish, forgetting and
        :meth:`retrain` use every row of ``X``.
    **kwargs
        Any other :class:`skorch.classifier.NeuralNetClassifier` parameter (``lr``,
        ``max_epochs``, ``batch_size``, ``optimizer``, ``callbacks``,
        ``device``, ``module__*``). ``iterator_train__shuffle`` defaults to
        True. A ``device`` this machine lacks (``'cuda'`` without CUDA) is
        refused at ``initialize`` and ``fit`` with the devices it has.

    Attributes
    ----------
    module_ : torch.nn.Module
    classes_ : ndarray of shape (n_classes,)
        The labels. Inside the training loop (callbacks), whose targets are
        the class indices, ``arange(n_classes)``.
    n_features_in_ : int
        ``X.shape[1]`` at fit; inference checks the whole row shape.
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
        self._check_device_available()
        return clone(resolve_attack(self.attack))

    def _check_device_available(self):
        """Raise a clear ``ValueError`` when ``device`` names a backend this machine lacks."""
        if self.device is None:  # skorch: leave the module where it is
            return
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device={self.device!r} is not a torch device ('cpu', 'cuda', "
                             "'cuda:0', ...).") from exc
        available = ["'cpu'"]
        if torch.cuda.is_available():
            available.append("'cuda'")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            available.append("'mps'")
        hint = f"pass device={' or '.join(available)}"
        if device.type == "cuda":
            if not torch.cuda.is_available():
                build = "has no CUDA support" if torch.version.cuda is None else \
                    "finds no CUDA driver or GPU"
                raise ValueError(f"device={self.device!r} was requested but CUDA is not "
                                 f"available (this torch build {build}): {hint}.")
            count = torch.cuda.device_count()
            if device.index is not None and device.index >= count:
                raise ValueError(f"device={self.device!r} was requested but there "
                                 f"{'is' if count == 1 else 'are'} only {count} CUDA "
                                 f"device{'' if count == 1 else 's'} (cuda:0 to "
                                 f"cuda:{count - 1}).")
        elif device.type == "mps" and "'mps'" not in available:
            raise ValueError(f"device={self.device!r} was requested but MPS is not "
                             f"available: {hint}.")

    def _torch_device(self):
        """The device data go to: ``device``, or the module's own when ``device=None``."""
        if self.device is not None:
            return torch.device(self.device)
        module = getattr(self, "module_", None)
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                return p.device
        return torch.device("cpu")

    def _float_dtype(self):
        """The numpy float dtype of the module's parameters (float32 before initialisation)."""
        module = getattr(self, "module_", None)
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.is_floating_point():
                    return np.dtype(_NUMPY_FLOATS.get(p.dtype, np.float32))
        return np.dtype(np.float32)

    def _check_X(self, X, reset):
        """Validate an array ``X``: numeric, finite, at least 2-D, rows of the fitted shape.

        Cast to the module's float dtype. The messages are scikit-learn's
        (``check_array`` / ``validate_data``), as for the linear models.
        """
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu()
            X = to_numpy(X.float() if X.dtype == torch.bfloat16 else X)
        original = X
        X = check_array(X, dtype=self._float_dtype(), allow_nd=True, input_name="X",
                        estimator=self)
        if not X.flags.writeable:  # a read-only view (pandas, a memory map): torch warns
            X = X.copy()
        if reset:
            self._input_shape = X.shape[1:]
        else:
            shape = getattr(self, "_input_shape", None)
            if shape is None and getattr(self, "_train_X", None) is not None:
                shape = self._train_X.shape[1:]
            if shape is not None and tuple(X.shape[1:]) != tuple(shape):
                if X.ndim == 2 and len(shape) == 1:
                    raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                                     f"is expecting {shape[0]} features as input.")
                raise ValueError(f"X has rows of shape {tuple(X.shape[1:])}, but "
                                 f"{type(self).__name__} was fitted on rows of shape "
                                 f"{tuple(shape)}.")
        # feature names and n_features_in_, as every scikit-learn estimator
        validate_data(self, original, reset=reset, skip_check_array=True)
        return X

    @staticmethod
    def _from_dataset(X, y, caller):
        """``(X, y)`` from a skorch ``Dataset`` (or a ``Subset`` of one); arrays unchanged."""
        if not isinstance(X, TorchDataset):
            return X, y
        try:
            Xd, yd = data_from_dataset(X)
        except AttributeError:
            raise TypeError(
                f"{caller} needs arrays or a skorch Dataset (or a Subset of one) holding "
                f"arrays, got {type(X).__name__}."
            ) from None
        if isinstance(Xd, dict):
            raise TypeError(f"{caller} needs a single input array, got a Dataset of a dict.")
        return Xd, yd if y is None else y

    def _check_inference_X(self, X):
        """Inputs of the inference methods: arrays are validated; datasets pass through.

        A torch ``Dataset`` is what skorch hands to callbacks (``EpochScoring``)
        and validation splits (``ValidSplit``); a skorch ``Dataset`` of an
        array has that array validated.
        """
        if getattr(self, "_loop_n_classes", None) is None:
            check_is_fitted(self, "n_train_")
        elif isinstance(X, (TorchDataset, torch.Tensor)):
            return X  # the loop's own datasets and batches, made of the validated X
        if isinstance(X, SkorchDataset) and isinstance(X.X, (np.ndarray, torch.Tensor)):
            Xv = self._check_X(X.X, reset=False)
            return X if Xv is X.X else SkorchDataset(Xv, X.y)
        if isinstance(X, TorchDataset):
            return X
        return self._check_X(X, reset=False)

    def _validate_data(self, X, y, reset):
        X = self._check_X(X, reset)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be 1-D with one entry per row of X ({X.shape[0]}), got shape {y.shape}."
            )
        if reset:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError("the training data needs samples of at least 2 classes.")
            if self.classes is not None:
                # skorch's ``classes``: the labels in the order of the module's outputs
                given = np.asarray(self.classes)
                if given.ndim != 1 or len(np.unique(given)) != len(given) or \
                        not np.array_equal(np.sort(given), classes):
                    raise ValueError(
                        f"classes={self.classes!r} must list each label of y once (in the "
                        f"order of the module's outputs); y has the labels {classes.tolist()}. "
                        "Leave classes=None to take them from y.")
                classes = given
        else:
            classes = np.asarray(self.classes_)
        order = np.argsort(classes, kind="stable")
        pos = np.clip(np.searchsorted(classes[order], y), 0, len(classes) - 1)
        if np.any(classes[order][pos] != y):
            raise ValueError("y has labels not seen in fit.")
        return X, order[pos].astype(np.int64), classes

    @property
    def classes_(self):
        """The class labels; inside the training loop, the class indices it trains on."""
        n = getattr(self, "_loop_n_classes", None)
        if n is not None:
            return np.arange(n)
        return NeuralNetClassifier.classes_.fget(self)

    @contextlib.contextmanager
    def _training_loop(self, classes):
        """skorch's loop sees the targets as class indices: so do its callbacks."""
        self._loop_n_classes = len(classes)
        try:
            yield
        finally:
            del self._loop_n_classes

    # ---- random state --------------------------------------------------------------
    def _seeded(self):
        if self.random_state is None:
            return contextlib.nullcontext()
        devices = []
        if self.device is not None and str(self.device).startswith("cuda") \
                and torch.cuda.is_available():
            devices = [torch.device(self.device).index or 0]
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(int(self.random_state))
        return stack

    # ---- initialisation ------------------------------------------------------------
    def initialize(self):
        """Initialise the module, criterion and optimizer (skorch), after checking ``device``.

        Returns
        -------
        self : AdversarialNet
        """
        self._check_device_available()
        super().initialize()
        self.forget_names_ = resolve_names(self.module_, self.forget_params)
        self._theta_init = flat_values(self.module_, self.forget_names_)
        if self.train_params == "forget":
            self.initialize_optimizer()
        return self

    def get_all_learnable_params(self):
        """Yield the ``(name, parameter)`` pairs the optimizer trains: with
        ``train_params='forget'`` only those forgetting updates (``forget_params``),
        otherwise every learnable parameter, as skorch does."""
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
        Xi = to_tensor(Xi, device=self._torch_device())
        yi = to_tensor(yi, device=self._torch_device())
        X_adv = self._perturb_batch(Xi, yi)
        self._set_training(self.train_params == "all")
        y_pred = self.infer(X_adv, **fit_params)
        loss = self.get_loss(y_pred, yi, X=X_adv, training=True) + self._penalty()
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    # ---- fitting ---------------------------------------------------------------------
    @atomic_fit  # all-or-nothing: a failed fit leaves the net as it was
    def fit(self, X, y=None, **fit_params):
        """Initialise and train the network adversarially, then polish.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or skorch Dataset
            Training inputs (inside ``attack.clip`` when it is set); numeric,
            cast to the module's float dtype. A skorch ``Dataset`` of arrays
            is unpacked (the rows are kept to be forgotten).
        y : array-like of shape (n_samples,), default=None
            Class labels (``None`` only with a ``Dataset`` holding them).
        **fit_params : dict
            Passed to the module's ``forward``.

        Returns
        -------
        self : AdversarialNet
            Fitted; any earlier forgetting state is discarded.
        """
        attack = self._check_settings()
        X, y = self._from_dataset(X, y, "fit")
        X, codes, classes = self._validate_data(X, y, reset=True)
        self._check_inside(attack, X)
        with self._seeded():
            if not self.warm_start or not self.initialized_:
                self.initialize()
            X = X.astype(self._float_dtype(), copy=False)
            self._start_training(attack, X)
            with self._training_loop(classes):
                super().partial_fit(X, codes, **fit_params)
        return self._finish_training(X, codes, classes)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training on ``(X, y)``; starts a new forgetting history on these rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or skorch Dataset
        y : array-like of shape (n_samples,), default=None
        classes : ignored
        **fit_params : dict

        Returns
        -------
        self : AdversarialNet
        """
        if not self.initialized_ or not hasattr(self, "n_train_"):
            # never fitted (perhaps initialised): the classes come from this y
            return self.fit(X, y, **fit_params)
        attack = self._check_settings()
        X, y = self._from_dataset(X, y, "partial_fit")
        X, codes, classes_ = self._validate_data(X, y, reset=False)
        self._check_inside(attack, X)
        self._start_training(attack, X)
        with self._seeded(), self._training_loop(classes_):
            super().partial_fit(X, codes, **fit_params)
        return self._finish_training(X, codes, classes_)

    @staticmethod
    def _check_inside(attack, X):
        threat = TorchThreat(attack, X.shape[1:])
        threat.check_inside(torch.as_tensor(X[: min(len(X), 100_000)], dtype=torch.float32))

    def _start_training(self, attack, X):
        self.attack_ = attack
        self._threat = TorchThreat(attack, X.shape[1:], device=self._torch_device(),
                                   dtype=torch.from_numpy(X[:0]).dtype)

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
            threat = TorchThreat(self.attack_, self._train_X.shape[1:],
                                 device=self._torch_device(), dtype=torch.float64)
            self._objective_ = NetObjective(
                self.module_, self.forget_names_, self._train_X, self._train_y, threat,
                self.alpha, seed=0 if self.random_state is None else int(self.random_state),
                theta_init=self._theta_init, device=self._torch_device(),
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
    def forward(self, X, training=False, device="cpu"):
        """The module's outputs (logits) on ``X``, concatenated (skorch's ``forward``).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), tensor or torch Dataset
            Arrays are validated as in :meth:`predict`.
        training : bool, default=False
        device : str, default='cpu'
            Where the result is stored.

        Returns
        -------
        y_infer : torch.Tensor
        """
        return super().forward(self._check_inference_X(X), training=training, device=device)

    def predict_proba(self, X):
        """Class probabilities of ``X`` (softmax of the logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), tensor or torch Dataset
            Numeric and finite, with rows of the shape seen in ``fit``; cast
            to the module's float dtype. A torch ``Dataset`` (what skorch's
            callbacks and validation splits pass) is used as given.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        return super().predict_proba(self._check_inference_X(X))

    def predict(self, X):
        """Class labels of ``X``.

        Inside the training loop (skorch callbacks such as ``EpochScoring``,
        whose targets are the class indices the loop trains on) the class
        indices; after ``fit``, the labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), tensor or torch Dataset
            As in :meth:`predict_proba`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        proba = super().predict_proba(self._check_inference_X(X))
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y=None, sample_weight=None):
        """Accuracy on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), tensor or skorch Dataset
        y : array-like of shape (n_samples,), default=None
            The labels; ``None`` takes them from a skorch ``Dataset``.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if y is None:
            X, y = self._from_dataset(X, y, "score")
            if y is None:
                raise ValueError("score needs the labels y (or a skorch Dataset holding them).")
        return super().score(X, to_numpy(y) if isinstance(y, torch.Tensor) else y,
                             sample_weight=sample_weight)

    def robust_score(self, X, y=None, attack=None):
        """Accuracy on ``(X, y)`` under ``attack`` (default: the training attack).

        The attack's random start is seeded (``attack.random_state``, else
        ``random_state``), so the score is reproducible.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or skorch Dataset
            Validated as in :meth:`predict`.
        y : array-like of shape (n_samples,), default=None
            The labels; ``None`` takes them from a skorch ``Dataset``.
        attack : PGD, FGSM or Penalized, default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "n_train_")
        X, y = self._from_dataset(X, y, "robust_score")
        if y is None:
            raise ValueError("robust_score needs the labels y (or a skorch Dataset holding them).")
        if isinstance(y, torch.Tensor):
            y = to_numpy(y)
        X, codes, _ = self._validate_data(X, y, reset=False)
        attack = self.attack_ if attack is None else clone(resolve_attack(attack))
        device = self._torch_device()
        threat = TorchThreat(attack, X.shape[1:], device=device,
                             dtype=torch.from_numpy(X[:0]).dtype)
        threat.check_inside(torch.as_tensor(X, device=device))
        seed = attack.random_state if isinstance(attack.random_state, numbers.Integral) else (
            self.random_state or 0)
        gen = torch.Generator().manual_seed(int(seed))
        self.module_.eval()
        correct = 0
        for start in range(0, len(X), 512):
            xb = torch.as_tensor(X[start:start + 512], device=device)
            yb = torch.as_tensor(codes[start:start + 512], device=device)

            def input_grad(xa, yb=yb):
                xa = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    loss = torch.nn.functional.cross_entropy(self.module_(xa), yb,
                                                             reduction="sum")
                    return torch.autograd.grad(loss, xa)[0]

            noise = torch.rand(xb.shape, generator=gen).to(device=device, dtype=xb.dtype) \
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
        self._check_fitted_settings()  # the reference of the fitted objective only
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
        state.pop("_loop_n_classes", None)  # pickled from a callback: out of the loop
        return state

    def __setstate__(self, state):
        state.setdefault("polish_max_iter", 300)  # pickled before the parameter existed
        super().__setstate__(state)
        if "attack_" in self.__dict__ and getattr(self, "_train_X", None) is not None:
            self._threat = TorchThreat(self.attack_, self._train_X.shape[1:],
                                       device=self._torch_device(),
                                       dtype=torch.from_numpy(self._train_X[:0]).dtype)
