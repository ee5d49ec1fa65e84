"""Forgetting plumbing shared by every skmuter model.

:class:`ForgetMixin` gives an estimator ``forget`` and ``partial_forget``:
request validation (positions, boolean masks, or pandas index labels with
``by='label'``), the transactional call into the forgetter, purging the
forgotten rows, and the request log. A model provides a few hooks:

``_forget_objectives()``
    One objective per fitted problem (see :mod:`skmuter.forgetters`).
``_get_thetas()`` / ``_set_thetas(thetas)``
    The parameters that forgetting updates, one vector per problem.
``_purge(rows)``
    Erase the rows from every array the model keeps.
``_check_request_classes(kept)``
    Raise if the kept rows would miss a class (classifiers).

and the fitted attributes ``n_train_``, ``forgotten_``, ``forget_log_``,
``forgetter_`` set by :func:`reset_forgetting` at the end of ``fit``. A model
fitted with certified removal also sets ``certificate_`` (a dict, see
:mod:`skmuter.certified`) and ``_certified`` (its
:class:`~skmuter.certified.CertifiedRemoval` settings); :meth:`ForgetMixin._certify`
then checks every call against the budget before it is committed.

Every ``forget`` / ``partial_forget`` call and every ``fit`` wrapped in
:func:`atomic_fit` is all-or-nothing and serialised per estimator, and
forgetting refuses when a parameter that defines the fitted objective changed
since ``fit``. That machinery (the lock, the transaction, the fitted settings)
lives in ``skmuter._transaction``; request validation (positions, boolean
masks, index labels) in ``skmuter._requests``. Their names are re-exported
here.
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ._requests import (  # noqa: F401 - re-exported
    _as_positions,
    _shown,
    check_leaves_rows,
    label_positions,
    rows_and_kept,
    validate_indices,
)
from ._transaction import FREE_PARAMS as _FREE_PARAMS
from ._transaction import (  # noqa: F401 - re-exported
    _fingerprint,
    _is_atomic,
    _read_only_error,
    _Snapshot,
    _training_index,
    _transaction,
    atomic_fit,
    estimator_lock,
    fitted_settings,
    undoable_set,
)
from ._warnings import warn
from .forgetters import ForgetWarning, resolve_forgetter

#: past this fraction of forgotten training rows, forgetting warns that a refit
#: would be wiser
RETRAIN_ADVICE_FRACTION = 0.2

#: parameters that may change between ``fit`` and ``forget``: the forgetter
#: (switched before the first request), the verbosity, and how a network's
#: curvature is stored (dense or matrix-free: the same objective)
FREE_PARAMS = _FREE_PARAMS


def reset_forgetting(est, n_train):
    """Start a fresh forgetting history (called at the end of ``fit``).

    Also records the fitted settings (:func:`fitted_settings`), and for a
    class with ``_keep_fit_params = True`` a copy of every parameter, which
    its ``retrain`` uses.
    """
    est.n_train_ = int(n_train)
    est.forgotten_ = np.zeros(0, dtype=np.int64)
    est.forget_log_ = []
    est.forgetter_ = None
    est._forgetter_states = None
    est._train_index = None
    est._fitted_settings = fitted_settings(est)
    if getattr(est, "_keep_fit_params", False):
        est._fit_params = {k: clone(v, safe=False)
                           for k, v in est.get_params(deep=False).items()}


def prepare_states(template, objectives, thetas, rows):
    """A fresh forgetter state per problem, linearised at ``thetas`` over ``rows``."""
    return [clone(template).prepare(obj, theta, rows) for obj, theta in zip(objectives, thetas)]


def _passes(objectives):
    """Passes over rows in chunks so far (None for in-memory objectives)."""
    counts = [getattr(o, "n_passes", None) for o in objectives]
    return None if any(c is None for c in counts) else int(sum(counts))


def _same_params(a, b):
    if a is None or type(a) is not type(b):
        return False
    pa, pb = a.get_params(), b.get_params()
    return pa.keys() == pb.keys() and all(repr(pa[k]) == repr(pb[k]) for k in pa)


class ForgetMixin:
    """``forget`` / ``partial_forget`` for a model that provides the hooks above."""

    #: set by a class whose ``retrain`` refits with the fitted parameters
    _keep_fit_params = False

    def forget(self, indices, by="position", *, X=None, y=None, sample_weight=None):
        """Forget training rows as one batch request.

        The call is all-or-nothing: on any error (a bad request, the
        forgetter, the certificate check, purging the rows) the estimator is
        exactly as before, and concurrent calls on one estimator run one
        after the other.

        Parameters take effect at the next ``fit``, as in scikit-learn:
        forgetting continues the *fitted* model, so it refuses ("parameters
        ... changed since fit; refit first") when a parameter that defines
        the fitted objective (the attack, ``alpha``, ``fit_intercept``,
        certified removal, the solver settings, ...) was changed with
        ``set_params`` after ``fit``. Only ``forgetter`` (before the first
        request) and ``verbose`` may change in between; ``retrain()`` uses the
        fitted settings too.

        Parameters
        ----------
        indices : array-like of int or bool, or labels
            With ``by='position'``: positions in the training set given to
            ``fit`` (or a boolean mask of its length). Forgetting is
            cumulative: positions keep referring to the original training set,
            and a forgotten row cannot be forgotten again. With
            ``by='label'``: labels of the index of the DataFrame (or Series)
            given to ``fit``.
        by : {'position', 'label'}, default='position'
            How ``indices`` name the rows.
        X, y : array-like, optional
            The content of the rows, in the order of ``indices``, for a model
            that keeps no training rows (``keep_data=False``, or a model
            fitted on a Dask collection and loaded from a pickle); refused by
            a model that keeps them. The rows must be those given to ``fit``.
        sample_weight : array-like, optional
            Their weights, when the model was fitted with ``sample_weight``.

        Returns
        -------
        self : object
            The estimator with updated parameters, the rows purged from its
            stored data (their index labels included), and a new record in
            ``forget_log_``. On error nothing changes.

        Examples
        --------
        >>> import pandas as pd
        >>> from sklearn.datasets import load_digits
        >>> from skmuter import AdversarialLogisticRegression
        >>> X, y = load_digits(n_class=2, return_X_y=True)
        >>> X = pd.DataFrame(X / 16, index=[f"user{i}" for i in range(len(X))])
        >>> est = AdversarialLogisticRegression(alpha=1e-2).fit(X, y)
        >>> est.forget(["user3", "user7"], by="label").forgotten_
        array([3, 7])
        """
        def call():
            rows = self._validate_request(self._positions(indices, by),
                                          content=(X, y, sample_weight))
            return self._run_requests([np.sort(rows)])

        return _transaction(self, call, share=("_forgetter_states",))

    def partial_forget(self, indices, by="position", *, X=None, y=None, sample_weight=None):
        """Forget training rows as successive single-row requests, in the given order.

        This is the unit of the MUter paper's Algorithm 1 (each request updates
        the memory before the next). Each request is checked to ``forget_tol``
        and the forgetter rebased at its result, so the result agrees with
        :meth:`forget` of the same rows within the logged distance bounds
        (exactly, for forgetters with ``linearization='fitted'`` and
        ``forget_tol=None``). All-or-nothing and refused after a change of
        parameters like :meth:`forget`.

        Parameters
        ----------
        indices : array-like of int or bool, or labels
            Positions in the original training set, or a boolean mask; labels
            of the training DataFrame's index with ``by='label'``.
        by : {'position', 'label'}, default='position'
            How ``indices`` name the rows.
        X, y, sample_weight : array-like, optional
            The content of the rows for a model that keeps none (see
            :meth:`forget`).

        Returns
        -------
        self : object
        """
        def call():
            rows = self._validate_request(self._positions(indices, by),
                                          content=(X, y, sample_weight))
            return self._run_requests([np.array([r]) for r in rows])

        return _transaction(self, call, share=("_forgetter_states",))

    def check_forget_request(self, indices, by="position"):
        """Check a forget request without applying it.

        Raises what :meth:`forget` would raise on the same request (bad,
        duplicate or already forgotten indices; unknown labels; a request that
        would leave a class without rows; parameters changed since fit). A
        pipeline checks its final step this way before any step forgets.

        Parameters
        ----------
        indices : array-like of int or bool, or labels
            Positions in the original training set, or a boolean mask; labels
            with ``by='label'``.
        by : {'position', 'label'}, default='position'

        Returns
        -------
        rows : ndarray of int
            The requested positions, in the given order.
        """
        with estimator_lock(self):
            return self._validate_request(self._positions(indices, by))

    def _keeps_rows(self):
        """Whether the model can read its kept training rows (a pass)."""
        return True

    def _forget_tolerance(self):
        """The target optimality residual of every request (None: no check)."""
        return getattr(self, "forget_tol", None)

    def _kept_mask(self):
        kept = np.ones(self.n_train_, dtype=bool)
        kept[self.forgotten_] = False
        return kept

    # ---- labels ---------------------------------------------------------------------
    # ---- labels ---------------------------------------------------------------------
    def _positions(self, indices, by):
        """Positions of a request given by position (unchanged) or by index label."""
        return label_positions(indices, by, self._fitted_index)

    def _fitted_index(self):
        check_is_fitted(self)
        return getattr(self, "_train_index", None), self._kept_mask()

    def _purge_index(self, rows):
        """Drop the labels of forgotten rows from the stored training index."""
        index = getattr(self, "_train_index", None)
        if index is not None:
            # in place (the transaction keeps the index by reference): the
            # cost grows with the request, not with the training set
            undoable_set(index, rows, None)

    # ---- validation -----------------------------------------------------------------
    def _validate_request(self, indices, content=(None, None, None)):
        check_is_fitted(self)
        self._check_fitted_settings()
        rows = validate_indices(indices, self.n_train_, self.forgotten_)
        check_leaves_rows(rows, self.n_train_, self.forgotten_)
        self._accept_rows(rows, *content)
        self._check_request_rows(rows)
        return rows

    def _kept_after(self, rows):
        """The mask of the rows kept once ``rows`` are forgotten too."""
        kept = self._kept_mask()
        kept[rows] = False
        return kept

    def _check_request_rows(self, rows):
        """Raise if forgetting ``rows`` leaves a class empty."""
        self._check_request_classes(self._kept_after(rows))

    def _accept_rows(self, rows, X, y, sample_weight):
        """The content of the requested rows, for a model that keeps none."""
        if X is not None or y is not None or sample_weight is not None:
            raise ValueError("this model keeps its training rows: forget(indices) takes no "
                             "X, y or sample_weight.")

    def _check_fitted_settings(self):
        fitted = getattr(self, "_fitted_settings", None)
        if fitted is None:  # pickled before the settings were recorded
            return
        now = fitted_settings(self)
        changed = sorted(k for k in set(fitted) | set(now) if fitted.get(k) != now.get(k))
        if changed:
            raise ValueError(
                f"parameters {changed} changed since fit; refit first. Parameters take "
                "effect at the next fit (scikit-learn's rule) and forgetting continues the "
                "fitted model; set them back to forget without refitting."
            )

    def _check_request_classes(self, kept):
        return None

    # ---- the transaction ------------------------------------------------------------
    def _run_requests(self, requests):
        """Run requests on copies of the forgetter states, then commit.

        Called inside the transaction of :meth:`forget`: any exception, in the
        commit included, puts the estimator back as it was.
        """
        template = resolve_forgetter(self.forgetter)
        done = []  # the requests of this call run so far

        def remaining_now():
            # the kept rows' indices, formed only where something reads them
            # (a check, a forgetter whose request reads them, a rebuild): a
            # request that needs no pass costs nothing that grows with the rows
            kept = self._kept_mask()
            for r in done:
                kept[r] = False
            return np.flatnonzero(kept)

        thetas = self._get_thetas()
        objectives = self._forget_objectives()
        precompute = 0.0
        has_rows = self._keeps_rows()
        if self._forgetter_states is None or not _same_params(self.forgetter_, template):
            if not has_rows:
                raise ValueError(
                    f"this model keeps no training rows: its forgetter "
                    f"{self.forgetter_!r} was prepared at fit and cannot be switched to "
                    f"{template!r} (set forgetter back, or refit with the new forgetter)."
                )
            if self.forgotten_.size and not template.rebases:
                raise ValueError(
                    f"the forgetter {template!r} is linearised at the fitted model and rows "
                    "were already forgotten: refit before switching to it."
                )
            t0 = time.perf_counter()
            states = prepare_states(template, objectives, thetas, remaining_now())
            precompute = time.perf_counter() - t0
        else:
            states = copy.deepcopy(self._forgetter_states)
        tol = self._forget_tolerance() if has_rows else None
        passes0 = _passes(objectives)
        records = []
        for req in requests:
            done.append(req)
            t0 = time.perf_counter()
            need_rows = has_rows and (tol is not None
                                      or any(s.needs_rows for s in states))
            remaining = remaining_now() if need_rows else None
            solve = update = check = 0.0
            new, residuals, bounds, steps, infos = [], [], [], 0, []
            for k, (obj, state) in enumerate(zip(objectives, states)):
                theta, timing = state.forget(obj, req, remaining)
                if timing.get("solve_info") is not None:
                    infos.append(timing["solve_info"])  # an iterative solve's record
                solve += timing["solve_time"]
                update += timing["update_time"]
                t1 = time.perf_counter()
                if tol is not None:
                    theta, residual, n_steps = obj.refine(
                        theta, remaining, tol, start=thetas[k],
                        memory=getattr(state, "memory_", None))
                    residuals.append(residual)
                    steps += n_steps
                t2 = time.perf_counter()
                if tol is not None:
                    check += t2 - t1
                    states[k] = state = state.rebase(obj, theta, remaining)
                else:
                    # unchecked: based at the result along the step's own
                    # quadratic model, without a pass where it carries over
                    advanced = state.advance(obj, theta)
                    if advanced is None and has_rows:
                        if remaining is None:
                            remaining = remaining_now()
                        advanced = state.rebase(obj, theta, remaining)
                    states[k] = state = state if advanced is None else advanced
                t3 = time.perf_counter()
                update += t3 - t2
                if tol is not None:
                    bounds.append(obj.distance_bound(theta, remaining, residuals[-1],
                                                     memory=getattr(state, "memory_", None)))
                    check += time.perf_counter() - t3
                new.append(theta)
            thetas = new
            record = {
                "request": len(self.forget_log_) + len(records),
                "n_removed": len(req),
                "forgetter": template.label(),
                "precompute_time": precompute if not records else 0.0,
                "solve_time": solve,
                "update_time": update,
                "check_time": check,
                "forget_tol": tol,
                "checked": tol is not None,
                "optimality_residual": max(residuals) if residuals else None,
                "retrain_distance_bound": (float(np.sqrt(np.sum(np.square(bounds))))
                                           if bounds else None),
                "refine_steps": steps,
            }
            if infos:
                record["solve_info"] = infos[0] if len(infos) == 1 else infos
            if not has_rows:
                record["check_skipped"] = "the model keeps no training rows"
            if passes0 is not None:
                passes = _passes(objectives)
                record["n_passes"] = passes - passes0
                passes0 = passes
            record["total_time"] = time.perf_counter() - t0 + record["precompute_time"]
            records.append(record)
            if tol is not None and record["optimality_residual"] > tol:
                warn(
                    f"forget request {record['request']} reached the optimality residual "
                    f"{record['optimality_residual']:.3g} > forget_tol={tol:.3g} after "
                    f"{steps} correction steps (distance to the exact retrain at most "
                    f"about {record['retrain_distance_bound']:.3g}); raise forget_tol, or "
                    "refit on remaining_training_data().",
                    ConvergenceWarning,
                )
        certified = getattr(self, "certificate_", None) is not None
        thetas, states, certificate = self._certify(
            thetas, states, remaining_now() if certified else None, records, template)
        removed = np.concatenate(requests)
        fraction = (self.forgotten_.size + removed.size) / self.n_train_
        exact_now = bool(records[-1].get("certified_retrain"))
        if (fraction > RETRAIN_ADVICE_FRACTION and template.label() != "retrain"
                and not exact_now):
            warn(
                f"{fraction:.0%} of the training rows are now forgotten; a forgetter "
                "linearised at the fitted model errs with the square of the removed "
                "fraction, so refitting on remaining_training_data() (or "
                "forgetter='retrain') would be wiser. Check with skmuter.metrics.",
                ForgetWarning,
            )
        self._commit(template, states, thetas, removed, records, certificate)
        return self

    def _commit(self, template, states, thetas, removed, records, certificate):
        """Publish a call's result (restored by the transaction if any step raises)."""
        self._forgetter_states = states
        self.forgetter_ = template
        self._set_thetas(thetas)
        last = records[-1]
        if last.get("certified_retrain"):
            self.optimality_residual_ = float(last["certified_residual"])
        elif last.get("optimality_residual") is not None:
            self.optimality_residual_ = float(last["optimality_residual"])
        self._purge(removed)
        self._purge_index(removed)
        self.forgotten_ = np.sort(np.concatenate([self.forgotten_, removed]))
        self.forget_log_ = [*self.forget_log_, *records]
        if certificate is not None:
            self.certificate_ = certificate

    def _certify(self, thetas, states, remaining, records, template):
        """Certified removal's one hook: check the result before it is committed.

        Without a certificate the result passes unchanged. With one, the
        summed gradient residual of the parameters this call would publish
        is checked against the budget (:meth:`CertifiedRemoval.check
        <skmuter.certified.CertifiedRemoval.check>`); over budget with
        ``on_spent='retrain'`` the problems are re-solved exactly on the
        ``remaining`` rows (the same perturbed objective, through each
        objective's ``refit``) and the forgetter linearised afresh there. The
        call's last record gets the certified fields.

        Returns ``(thetas, states, certificate)``; ``certificate`` (or None) is
        stored as ``certificate_``. May raise to reject the whole call.
        """
        if getattr(self, "certificate_", None) is None:
            return thetas, states, None
        settings = self._certified
        cert = dict(self.certificate_)
        objectives = self._forget_objectives()
        res = settings.residuals(objectives, thetas, remaining)
        proposed = max(res)
        spent, over = settings.check(res, cert["budget"])
        t0 = time.perf_counter()
        if over:
            thetas = [o.refit(remaining, theta0=t) for o, t in zip(objectives, thetas)]
            states = prepare_states(template, objectives, thetas, remaining)
            res = settings.residuals(objectives, thetas, remaining)
            spent = max(res) / cert["budget"]
            cert["n_retrains"] += 1
        cert.update(residual=res, spent=spent)
        records[-1].update(proposed_residual=proposed, certified_residual=max(res),
                           budget_spent=spent,
                           certified_retrain=bool(over),
                           certified_retrain_time=time.perf_counter() - t0 if over else 0.0)
        return thetas, states, cert

    def _relinearise(self, rows):
        """After the parameters moved outside a forgetter (re-expressed on new
        features): re-measure the certificate and rebuild the forgetting memory
        at the current parameters over ``rows``.

        Raises ``RuntimeError`` when the new parameters overspend the
        certificate's budget (the caller restores its state).
        """
        objectives = self._forget_objectives()
        thetas = self._get_thetas()
        if getattr(self, "certificate_", None) is not None:
            res = self._certified.residuals(objectives, thetas, rows)
            spent = max(res) / self.certificate_["budget"]
            if spent > 1:
                raise RuntimeError(f"re-expressed parameters spend {spent:.2f} times the "
                                   "certified-removal budget")
            self.certificate_ = dict(self.certificate_, residual=res, spent=spent)
            if self.forget_log_:  # records are never changed in place (the
                # transaction keeps the log by reference): a new last record
                self.forget_log_ = [*self.forget_log_[:-1], {
                    **self.forget_log_[-1], "certified_residual": max(res),
                    "budget_spent": spent}]
        if self.forgetter_ is not None:
            self._forgetter_states = prepare_states(self.forgetter_, objectives, thetas, rows)
