"""``AdversarialNet``: a skorch classifier trained adversarially that forgets rows."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data
from skorch.utils import to_numpy, to_tensor

from .._forgetting import ForgetMixin, atomic_fit, reset_forgetting
from ..attacks import resolve_attack
from ._attacks import TorchThreat
from ._inputs import (
    CastDataset,
    CodedDataset,
    DatasetRows,
    check_device_available,
    check_inference_X,
    check_inside,
    check_labels,
    check_X,
    check_X_y,
    dataset_of,
    float_dtype,
    from_dataset,
    is_streamed,
    scan_dataset,
    torch_device,
    training_loop,
)
from ._params import flat_values, resolve_names, write_flat
from ._refit import net_objective
from ._robust import penalty, perturb_batch, robust_accuracy
from ._settings import (
    PARAMETER_CONSTRAINTS,
    check_settings,
    paper_muter,
    seeded,
    warn_unconverged,
    warn_unforgotten,
)

__all__ = ["AdversarialNet", "paper_muter"]

#: default target optimality residual of a forget request (``forget_tol``)
DEFAULT_FORGET_TOL = 1e-6


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
        Parameters that forgetting updates: the network's output layer (the
        MUter paper), every parameter, or the parameters of the named modules
        (names from ``module_.named_modules()``, or parameter names:
        ``['fc']`` for a torchvision ResNet, ``['classifier.1']`` for a head
        inside an ``nn.Sequential``). ``'last'`` is found at ``fit`` by
        running the module on a few training rows: the ``nn.Linear`` whose
        output is the tensor the module returns, wherever it is registered;
        failing that (logits post-processed), the last registered
        ``nn.Linear`` with a name component ``fc``, ``classifier``,
        ``linear``, ``head``, ``heads``, ``output`` or ``out``, else the last
        registered ``nn.Linear``. ``forget_names_`` lists the result.
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
    forget_tol : float or None, default=1e-6
        Target optimality residual of every forget request (the gradient
        norm of the mean robust objective over the kept rows,
        :func:`skmuter.metrics.gradient_residual`). After the forgetter's
        step, :meth:`NetObjective.refine <skmuter.nn.NetObjective.refine>`
        checks it on the kept rows: a step that raises their robust objective
        above its value before the request is shortened (no published point
        is ever above doing nothing), then warm-started corrections follow
        while the residual exceeds ``forget_tol`` (Newton steps with the
        forgetter's curvature on a smooth objective, the retrain's bundle
        polish under PGD/FGSM), at most 20 evaluations of the objective in
        all. Each
        record of ``forget_log_`` holds the residual, a distance bound
        (``inf`` under PGD/FGSM, where none exists) and the steps. The default
        is reached in a step or two where the objective is smooth (no attack,
        :class:`~skmuter.attacks.Penalized`; float32 parameters limit the
        attainable residual to about ``1e-8``) and keeps residual fractions
        there below 0.01. Under PGD/FGSM the gradient does not vanish even at
        the exact retrain (about ``1e-3`` at the kinked minimum), so no
        tolerance is reached: every request runs the step control and the
        polish, and a ``ConvergenceWarning`` reports the residual. ``None``
        skips the check (the forgetter's step alone, which under PGD/FGSM
        raises the kept rows' objective far above doing nothing).
    random_state : int or None, default=None
        Seeds the module's construction (when ``module`` is a class), the
        shuffling and the attack's random starts: two CPU fits with the same
        seed give the same model. The global torch generator is left as it was.
    polish : bool, default=True
        Solve for the forgotten parameters exactly after training.
    polish_max_iter : int, default=300
        Most L-BFGS iterations of the polish and of :meth:`retrain`. Each
        iteration re-runs the attack on every training row; under a
        sign-step attack (PGD, FGSM) L-BFGS stops at a jump of the objective
        long before this, and at most 200 proximal bundle steps, in rounds
        with restarted L-BFGS, descend to the kinked minimum (see
        :meth:`retrain`).
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
        skorch's ``classes`` lists the labels in the order of the module's
        outputs; it may name labels without training rows (by default the
        labels of ``y``). The module must return one output per class: ``fit``
        refuses a module with more or fewer outputs, by name.

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
        Gradient norm of the robust objective at the end of ``fit`` (after a
        checked forget: at the published parameters, over the kept rows).
    converged_ : bool or None
        Whether the polish reached the optimum: on a smooth objective a
        gradient norm of at most ``1e-6`` with the penalised attack converged
        at it; under PGD/FGSM a polish that ended by finding no lower point
        nearby (the gradient at that kink stays near ``1e-3``). ``None``
        without polish. A fit that did not converge warns
        (``ConvergenceWarning``), and so does every forget from it: there is
        no exact reference to forget towards. ``polish_info_`` has the
        details.
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

    Datasets: ``fit(dataset)`` (a map-style torch ``Dataset`` of ``(x, y)``,
    or a ``DataLoader``, whose dataset is used with the net's own batching)
    equals the fit on the same arrays. Only the labels are stored; the
    inputs are read in batches whenever the objective runs the attack, and
    with a linear head on a frozen body only the head's features at the
    worst cases are cached per row (``n x n_features``), so image sets too
    large for one array in memory work. Forgotten positions are marked and
    never read again. ``score``, ``robust_score`` and ``predict`` accept
    datasets and stream them. The dataset is not pickled with the net: after
    loading, :meth:`attach_dataset` gives it back for further forgetting.

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
        forget_tol=DEFAULT_FORGET_TOL,
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
        self.forget_tol = forget_tol
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

    # ---- validation and inputs (``_settings``, ``_inputs``) ------------------------
    _parameter_constraints: dict = PARAMETER_CONSTRAINTS  # scikit-learn's convention
    _check_settings = check_settings
    _check_device_available = check_device_available
    _torch_device = torch_device
    _float_dtype = float_dtype
    _check_X = check_X
    _from_dataset = staticmethod(from_dataset)
    _check_inference_X = check_inference_X
    _validate_data = check_X_y
    _check_inside = staticmethod(check_inside)

    @property
    def classes_(self):
        """The class labels; inside the training loop, the class indices it trains on."""
        n = getattr(self, "_loop_n_classes", None)
        if n is not None:
            return np.arange(n)
        return NeuralNetClassifier.classes_.fget(self)

    _training_loop = training_loop

    # ---- random state (``_settings``) ----------------------------------------------
    _seeded = seeded

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

    # ---- training step (``_robust``) -----------------------------------------------
    _penalty = penalty
    _perturb_batch = perturb_batch

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
        X : array-like of shape (n_samples, ...), torch Dataset
            Training inputs (inside ``attack.clip`` when it is set); numeric,
            cast to the module's float dtype. A skorch ``Dataset`` of arrays
            is unpacked (the rows are kept to be forgotten). Any other
            map-style torch ``Dataset`` of ``(x, y)`` items (or a
            ``DataLoader`` over one) is checked in one pass and kept by
            reference, never copied into an array: forgetting indices are its
            positions (see Notes).
        y : array-like of shape (n_samples,), default=None
            Class labels (``None`` with a ``Dataset`` holding them).
        **fit_params : dict
            Passed to the module's ``forward``.

        Returns
        -------
        self : AdversarialNet
            Fitted; any earlier forgetting state is discarded.
        """
        attack = self._check_settings()
        X, codes, classes, train = self._training_data(X, y, attack, reset=True, caller="fit")
        with self._seeded():
            if not self.warm_start or not self.initialized_:
                self.initialize()
                fresh = True
            else:
                fresh = False
            X = self._cast_rows(X)
            if fresh:
                self._resolve_head(X)
            self._check_outputs(X, classes)
            self._start_training(attack, X)
            with self._training_loop(classes):
                if train is None:
                    super().partial_fit(X, codes, **fit_params)
                else:
                    super().partial_fit(train, codes, **fit_params)  # y: for splits
        return self._finish_training(X, codes, classes)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training on ``(X, y)``; starts a new forgetting history on these rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), torch Dataset
            As in :meth:`fit`.
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
        X, codes, classes_, train = self._training_data(X, y, attack, reset=False,
                                                        caller="partial_fit")
        X = self._cast_rows(X)
        self._start_training(attack, X)
        with self._seeded(), self._training_loop(classes_):
            if train is None:
                super().partial_fit(X, codes, **fit_params)
            else:
                super().partial_fit(train, codes, **fit_params)  # y: for splits
        return self._finish_training(X, codes, classes_)

    def _training_data(self, X, y, attack, reset, caller):
        """Validated rows, class codes, classes, and what the loop iterates (None: arrays).

        A streamed dataset (or loader) is checked in one pass
        (:func:`~skmuter.nn._inputs.scan_dataset`) and kept by reference.
        """
        if is_streamed(X):
            if y is not None:
                raise TypeError(f"{caller} takes the labels from the (x, y) items of a torch "
                                "Dataset or DataLoader (pass y=None); with separate labels y, "
                                "pass arrays or a skorch Dataset holding arrays.")
            rows, labels = scan_dataset(self, X, attack, reset, caller)
            codes, classes = check_labels(self, labels, len(rows), reset)
            return rows, codes, classes, CodedDataset(rows, codes)
        X, y = self._from_dataset(X, y, caller)
        X, codes, classes = self._validate_data(X, y, reset=reset)
        self._check_inside(attack, X)
        return X, codes, classes, None

    def _cast_rows(self, X):
        """The rows in the module's float dtype (a dataset's are cast as they are read)."""
        if isinstance(X, DatasetRows):
            X.dtype = self._float_dtype()
            return X
        return X.astype(self._float_dtype(), copy=False)

    def _resolve_head(self, X):
        """With ``forget_params='last'``, find the output layer by running the module on rows."""
        if not (isinstance(self.forget_params, str) and self.forget_params == "last"):
            return
        sample = torch.as_tensor(np.asarray(X[: min(8, len(X))]), device=self._torch_device())
        names = resolve_names(self.module_, "last", sample)
        if names != self.forget_names_:
            self.forget_names_ = names
            self._theta_init = flat_values(self.module_, names)
            if self.train_params == "forget":
                self.initialize_optimizer()

    def _check_outputs(self, X, classes):
        """Raise when the module's outputs per row are not one per class (then
        ``predict`` would name classes that do not exist)."""
        sample = torch.as_tensor(np.asarray(X[:1]), device=self._torch_device())
        module = self.module_
        modes = [(m, m.training) for m in module.modules()]
        try:  # evaluation mode (no batch statistics change), modes put back
            module.eval()
            with torch.no_grad():
                out = module(sample)
        except TypeError:  # a forward that needs fit_params: the loop will tell
            return
        finally:
            for m, mode in modes:
                m.training = mode
        if not isinstance(out, torch.Tensor):
            return
        width = int(np.prod(out.shape[1:])) if out.ndim > 1 else 1
        if width != len(classes):
            shown = classes.tolist() if len(classes) <= 12 else (
                f"{classes[:5].tolist()} ... {classes[-2:].tolist()}")
            raise ValueError(
                f"the module returns {width} outputs (logits) per row, but there are "
                f"{len(classes)} classes {shown}: make its output layer {len(classes)} "
                f"wide, or, when some classes have no training row, pass classes= with "
                f"all {width} labels in the order of the outputs.")

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
        self.converged_ = None
        if self.polish:
            obj = self._objective()
            theta = obj.refit(np.arange(len(X)), self._get_thetas()[0])
            self.polish_info_ = obj.refit_info_
            self.converged_ = bool(obj.refit_info_["converged"])
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
            self._objective_ = net_objective(self)
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
            to the module's float dtype. A torch ``Dataset`` of ``(x, y)``
            items (or a ``DataLoader``) is read in batches, its inputs cast
            as they are read; inside the training loop (skorch's callbacks
            and validation splits) the loop's datasets are used as given.

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
        X : array-like of shape (n_samples, ...), tensor, torch Dataset
            A torch ``Dataset`` of ``(x, y)`` items (or a ``DataLoader``) is
            read in batches.
        y : array-like of shape (n_samples,), default=None
            The labels; ``None`` takes them from a ``Dataset``.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if is_streamed(X):
            if y is not None:
                raise TypeError("score takes the labels from the dataset: pass y=None with a "
                                 "torch Dataset or DataLoader.")
            check_is_fitted(self, "n_train_")
            _, y = scan_dataset(self, X, None, reset=False, caller="score")
            X = CastDataset(dataset_of(X, "score"), self._float_dtype(), "score")
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
        X : array-like of shape (n_samples, ...), torch Dataset
            Validated as in :meth:`predict`; a torch ``Dataset`` of ``(x, y)``
            items (or a ``DataLoader``) is read in batches.
        y : array-like of shape (n_samples,), default=None
            The labels; ``None`` takes them from a ``Dataset``.
        attack : PGD, FGSM or Penalized, default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "n_train_")
        if is_streamed(X):
            if y is not None:
                raise TypeError("robust_score takes the labels from the dataset: pass y=None "
                                 "with a torch Dataset or DataLoader.")
            attack = self.attack_ if attack is None else clone(resolve_attack(attack))
            X, labels = scan_dataset(self, X, attack, reset=False, caller="robust_score")
            codes, _ = check_labels(self, labels, len(X), reset=False)
            return robust_accuracy(self, X, codes, attack)
        X, y = self._from_dataset(X, y, "robust_score")
        if y is None:
            raise ValueError("robust_score needs the labels y (or a skorch Dataset holding them).")
        if isinstance(y, torch.Tensor):
            y = to_numpy(y)
        X, codes, _ = self._validate_data(X, y, reset=False)
        attack = self.attack_ if attack is None else clone(resolve_attack(attack))
        return robust_accuracy(self, X, codes, attack)

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
        # the classes with training rows (``classes`` may name more)
        fitted = np.unique(self._train_y[self._kept_mask()])
        present = np.unique(self._train_y[kept])
        if len(present) < len(fitted):
            raise ValueError("the request would forget every remaining row of a class.")

    def _validate_request(self, indices, content=(None, None, None)):
        rows = super()._validate_request(indices, content)
        self._warn_unforgotten()
        self._warn_unconverged()
        return rows

    _warn_unforgotten = warn_unforgotten
    _warn_unconverged = warn_unconverged

    def _purge(self, rows):
        self._train_X[rows] = 0.0
        self._train_y[rows] = 0
        theta = self._get_thetas()[0]
        if getattr(self, "_objective_", None) is not None:
            self._objective_.purge(rows)
            # nothing cached at the parameters before the request stays
            self._objective_.retain(theta)
        # A module given as an instance is trained in place and shares its
        # parameters with module_, until a copy or a pickle round trip of the
        # net separates them: then it would keep the parameters before the
        # request. Publish the forgotten parameters there too.
        module = self.module
        if isinstance(module, torch.nn.Module) and module is not self.module_:
            named = dict(module.named_parameters())
            own = dict(self.module_.named_parameters())
            if all(n in named and named[n].shape == own[n].shape for n in self.forget_names_):
                write_flat(module, self.forget_names_, theta)
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
            With ``retrain_info_`` (see ``polish_info_``).

        Notes
        -----
        Under a hard-ball attack (PGD, FGSM) the worst case is piecewise
        constant in the parameters, with very small cells: the objective
        jumps, and solves from different starts end in different shallow
        pockets of it. The solve keeps the lowest point it evaluated and
        polishes it with proximal bundle steps until no nearby point is lower;
        the robust objectives of such solves still differ by about ``1e-4``
        on a thousand MNIST rows (``benchmarks/net.py --mode verified``
        prints this *solver spread*), more than removing a few rows changes
        the optimum. Compare forgets by objective value
        (:func:`skmuter.metrics.objective_gap_fraction`) with that spread in
        mind.
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

    def attach_dataset(self, X):
        """Read the training rows from ``X`` again: a net fitted on a dataset, unpickled.

        A net fitted on a torch ``Dataset`` keeps it by reference and never
        pickles it (so neither the data nor the forgotten rows travel with
        the net). An unpickled one predicts and scores as it is; to forget,
        retrain or measure on its training rows, give it the same dataset
        back. Its forgotten rows stay purged: they are never read.

        Parameters
        ----------
        X : torch Dataset
            The dataset of ``fit`` (or a ``DataLoader`` over it), with the
            same positions.

        Returns
        -------
        self : AdversarialNet
        """
        check_is_fitted(self, "n_train_")
        rows = self._train_X
        if not isinstance(rows, DatasetRows):
            raise ValueError(  # noqa: TRY004 - the net's state, not the argument
                "attach_dataset is for a net fitted on a torch Dataset; this one keeps its "
                "training arrays.")
        ds = dataset_of(X, "attach_dataset")
        if len(ds) != len(rows):
            raise ValueError(f"the dataset has {len(ds)} rows, but the net was fitted on "
                             f"{len(rows)}: attach the dataset of fit.")
        kept = np.flatnonzero(~rows.purged)[:8]  # a few kept rows: same labels
        check = scan_dataset(self, torch.utils.data.Subset(ds, kept.tolist()), None,
                             reset=False, caller="attach_dataset")[1]
        if not np.array_equal(check_labels(self, check, len(kept), reset=False)[0],
                              self._train_y[kept]):
            raise ValueError("the dataset's labels differ from those the net was fitted on: "
                             "attach the dataset of fit.")
        rows.attach(ds)
        self._objective_ = None
        return self

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
        state.setdefault("polish_max_iter", 300)  # pickled before the parameters existed
        state.setdefault("forget_tol", None)  # forgets as it was fitted to: unchecked
        super().__setstate__(state)
        if "attack_" in self.__dict__ and getattr(self, "_train_X", None) is not None:
            self._threat = TorchThreat(self.attack_, self._train_X.shape[1:],
                                       device=self._torch_device(),
                                       dtype=torch.from_numpy(self._train_X[:0]).dtype)
