"""Forgetting plumbing shared by every skmuter model.

:class:`ForgetMixin` gives an estimator ``forget`` and ``partial_forget``:
request validation, the transactional call into the forgetter (on copies of
its state, committed only when every request succeeded), purging the
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
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._warnings import warn
from .forgetters import ForgetWarning, resolve_forgetter

#: past this fraction of forgotten training rows, forgetting warns that a refit
#: would be wiser
RETRAIN_ADVICE_FRACTION = 0.2


def reset_forgetting(est, n_train):
    """Start a fresh forgetting history (called at the end of ``fit``)."""
    est.n_train_ = int(n_train)
    est.forgotten_ = np.zeros(0, dtype=np.int64)
    est.forget_log_ = []
    est.forgetter_ = None
    est._forgetter_states = None


def prepare_states(template, objectives, thetas, rows):
    """A fresh forgetter state per problem, linearised at ``thetas`` over ``rows``."""
    return [clone(template).prepare(obj, theta, rows) for obj, theta in zip(objectives, thetas)]


def _same_params(a, b):
    if a is None or type(a) is not type(b):
        return False
    pa, pb = a.get_params(), b.get_params()
    return pa.keys() == pb.keys() and all(repr(pa[k]) == repr(pb[k]) for k in pa)


def validate_indices(indices, n_train, forgotten):
    """Turn a forget request into an array of row positions, or raise.

    Accepts integer array-likes and boolean masks of length ``n_train``.
    Rejects empty requests, non-integer or negative indices, out-of-range and
    duplicate indices, and rows already forgotten. The order is kept.
    """
    arr = np.asarray(indices)
    if arr.dtype == bool:
        if arr.ndim != 1 or arr.shape[0] != n_train:
            raise ValueError(
                f"a boolean mask must have one entry per training row ({n_train}), "
                f"got shape {arr.shape}."
            )
        rows = np.flatnonzero(arr)
    else:
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {arr.shape}.")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices must be integers or a boolean mask, got dtype {arr.dtype}.")
        rows = arr.astype(np.int64)
    if rows.size == 0:
        raise ValueError("the forget request is empty.")
    bad = rows[(rows < 0) | (rows >= n_train)]
    if bad.size:
        raise IndexError(f"indices out of range for {n_train} training rows: {bad[:5].tolist()}.")
    uniq, counts = np.unique(rows, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"duplicate indices in the request: {uniq[counts > 1][:5].tolist()}.")
    again = np.intersect1d(uniq, forgotten)
    if again.size:
        raise ValueError(f"rows already forgotten: {again[:5].tolist()}.")
    return rows


def rows_and_kept(indices, n_train, forgotten):
    """Validate a request; returns ``(rows, kept)``, the mask of rows kept after it.

    Raises when the request would forget every remaining row.
    """
    rows = validate_indices(indices, n_train, forgotten)
    kept = np.ones(n_train, dtype=bool)
    kept[forgotten] = False
    kept[rows] = False
    if not kept.any():
        raise ValueError("the request would forget every remaining training row.")
    return rows, kept


class ForgetMixin:
    """``forget`` / ``partial_forget`` for a model that provides the hooks above."""

    def forget(self, indices):
        """Forget training rows as one batch request.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the training set given to ``fit`` (or a boolean mask of
            its length). Forgetting is cumulative: positions keep referring to the
            original training set, and a forgotten row cannot be forgotten again.

        Returns
        -------
        self : object
            The estimator with updated parameters, the rows purged from its
            stored data, and a new record in ``forget_log_``. On error nothing
            changes.
        """
        rows = self._validate_request(indices)
        return self._run_requests([np.sort(rows)])

    def partial_forget(self, indices):
        """Forget training rows as successive single-row requests, in the given order.

        This is the unit of the MUter paper's Algorithm 1 (each request updates
        the memory before the next). For forgetters linearised at the fitted
        point (MUter, Newton, Fisher) the result equals :meth:`forget` of the
        same rows.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the original training set, or a boolean mask.

        Returns
        -------
        self : object
        """
        rows = self._validate_request(indices)
        return self._run_requests([np.array([r]) for r in rows])

    def check_forget_request(self, indices):
        """Check a forget request without applying it.

        Raises what :meth:`forget` would raise on the same request (bad,
        duplicate or already forgotten indices; a request that would leave a
        class without rows). A pipeline checks its final step this way before
        any step forgets.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the original training set, or a boolean mask.

        Returns
        -------
        rows : ndarray of int
            The requested positions, in the given order.
        """
        return self._validate_request(indices)

    def _kept_mask(self):
        kept = np.ones(self.n_train_, dtype=bool)
        kept[self.forgotten_] = False
        return kept

    def _validate_request(self, indices):
        check_is_fitted(self)
        rows, kept = rows_and_kept(indices, self.n_train_, self.forgotten_)
        self._check_request_classes(kept)
        return rows

    def _check_request_classes(self, kept):
        return None

    def _run_requests(self, requests):
        """Run requests on copies of the forgetter states; commit only on success."""
        template = resolve_forgetter(self.forgetter)
        kept = self._kept_mask()
        thetas = self._get_thetas()
        objectives = self._forget_objectives()
        precompute = 0.0
        if self._forgetter_states is None or not _same_params(self.forgetter_, template):
            if self.forgotten_.size:
                raise ValueError(
                    "the forgetter was changed after rows were forgotten; a forgetter is "
                    "linearised at the fitted model, so refit before switching."
                )
            t0 = time.perf_counter()
            states = prepare_states(template, objectives, thetas, np.flatnonzero(kept))
            precompute = time.perf_counter() - t0
        else:
            states = copy.deepcopy(self._forgetter_states)
        records = []
        for req in requests:
            kept[req] = False
            remaining = np.flatnonzero(kept)
            t0 = time.perf_counter()
            solve = update = 0.0
            new = []
            for obj, state in zip(objectives, states):
                theta, timing = state.forget(obj, req, remaining)
                solve += timing["solve_time"]
                update += timing["update_time"]
                new.append(theta)
            thetas = new
            records.append({
                "request": len(self.forget_log_) + len(records),
                "n_removed": len(req),
                "forgetter": template.label(),
                "precompute_time": precompute if not records else 0.0,
                "solve_time": solve,
                "update_time": update,
                "total_time": time.perf_counter() - t0,
            })
        thetas, states, certificate = self._certify(thetas, states, np.flatnonzero(kept),
                                                    records, template)
        # Commit: nothing above touched the estimator.
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
        self._forgetter_states = states
        self.forgetter_ = template
        self._set_thetas(thetas)
        self._purge(removed)
        self.forgotten_ = np.sort(np.concatenate([self.forgotten_, removed]))
        self.forget_log_.extend(records)
        if certificate is not None:
            self.certificate_ = certificate
        return self

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
            if self.forget_log_:
                self.forget_log_[-1].update(certified_residual=max(res), budget_spent=spent)
        if self.forgetter_ is not None:
            self._forgetter_states = prepare_states(self.forgetter_, objectives, thetas, rows)
