"""The logistic loss under an l_inf threat: worst cases known before the scores.

The logistic loss decreases in ``y z``, so its adversary pushes every score
against the label whatever the weights: row ``i`` moves by its room above
(``Q``) on the coordinates where ``s_i w_j > 0`` and by its room below
(``P``) where ``s_i w_j < 0``, with ``s_i = -y_i``. Two matrices then hold
every worst case: ``M1``, the worst-case rows where a weight is positive
(``x + Q`` for ``s_i > 0``, ``x - P`` otherwise), and ``M2``, where it is
negative. In the split ``w = w+ - w-`` the worst-case score is
``M1 w+ - M2 w-`` and the one-sided derivatives of the summed loss are
``M1^T g`` and ``-M2^T g``: one product each, against the five of the
general l_inf pass (inputs, rooms below and above, for both directions).

On a zero input both matrices take a per-column constant that depends on the
row's direction only; :class:`LogisticWorstCase` keeps them as those
constants plus two sparse matrices with the pattern of the inputs, except on
mostly non-zero columns, held dense (the second matrix's as the first one's
plus a constant per row direction and a sparse difference).

On the support each weight has one sign, so the rows' worst cases there form
one block, :class:`SupportBlock`: per column two constants and the stored
entries (mostly non-zero columns dense), with each row's products of its
entries for the total Hessian. Its products cost the stored entries, not
rows times columns.

:func:`checkpoint` evaluates, in one pass, everything a checked forget
request needs at a model: the value, the minimal subgradient (the
optimality residual) and the summed gradient and total Hessian on the free
coordinates, which are also the forgetter's memory at that model. After a
Newton step that keeps the signs, the zeros' conditions at the new point are
certified from those of the previous point by a bound (see
:func:`checkpoint`), so that the second pass of a request reads the support's
columns only.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._losses import _TERMS_BLOCK
from .._parallel import in_parallel
from .._transaction import record_undo, row_entries
from ._kkt import min_norm_subgradient
from ._worst_case import _RoomAbove, _RoomBelow

__all__ = ["Checkpoint", "LogisticWorstCase", "SupportBlock", "ZeroSums", "checkpoint",
           "keep_zero_sums"]

#: relative safety of the certified bound of the zeros (rounding of the sums)
_ROUNDING = 1e-12

#: a request's first check starts from the published model's exact sums of
#: the zeros (:class:`ZeroSums`)
_ACROSS_REQUESTS = True

#: entries of one block of rows of a Hessian sweep (its buffer stays in the
#: processor's cache)
_BLOCK_ENTRIES = 1 << 17

#: the zeros' columns of the sparse parts are kept apart when they hold less
#: than this share of their entries (then their sums read those columns only)
_ZERO_SHARE = 0.5

#: columns of the worst-case matrices with at least this share of non-zero
#: inputs are held dense (8 bytes an entry against 12 and an index gather)
_FULL_SHARE = 0.5

#: a dense column of the second worst-case matrix is held as the first one's
#: (plus a constant per row direction) where at most this share of its
#: entries differ otherwise
_PAIRED_SHARE = 0.25

#: dense blocks of at most this many columns: their weighted Gram matrix by
#: pairs of columns (the blocked products are slower on so few)
_PAIRWISE = 4

#: a support block keeps its rows' products of entries (one pass for the
#: Gram matrix) while they are at most this many per stored entry, and this
#: many in all
_PRODUCTS_PER_ENTRY = 16
_MAX_PRODUCTS = 1 << 24

#: support columns with at least this share of non-zero inputs are held as
#: dense columns (below it, as constants plus their stored entries)
_DENSE_SHARE = 0.25


def _limits(threat, d):
    """Per-column ``(low, high)`` of the threat's box (None without one)."""
    if not threat.boxed:
        return None, None
    low = np.broadcast_to(np.asarray(threat.low, dtype=np.float64), (d,))
    high = np.broadcast_to(np.asarray(threat.high, dtype=np.float64), (d,))
    return low, high


def _moved(x, cols, eps, low, high):
    """``(x + Q, x - P)``: the inputs ``x`` (of columns ``cols``) moved to the
    top and the bottom of their l_inf room (capped by the box)."""
    if low is None:
        return x + eps, x - eps
    return x + _RoomAbove(eps, high)(x, cols), x - _RoomBelow(eps, low)(x, cols)


class LogisticWorstCase:
    """The l_inf worst-case rows of the logistic loss for targets ``y``.

    Parameters
    ----------
    X : sparse matrix of shape (n_samples, n_features), CSR
        The inputs (not copied: the sparse parts are new matrices).
    threat : skmuter.attacks.Threat
        An l_inf threat.
    y : ndarray of shape (n_samples,)
        Targets in {-1, +1} (0 on erased rows, which weigh nothing). Kept by
        reference: the pass that owns this object serves these targets only.
    full : array-like of int, default=None
        The columns held dense (``W1``, ``W2``) instead of in the sparse parts
        (``S1``, ``S2``); None: those with at least ``_FULL_SHARE`` non-zero
        inputs.
    """

    def __init__(self, X, threat, y, full=None):
        X = sparse.csr_matrix(X)
        n, d = X.shape
        self.y = y
        eps = float(threat.epsilon)
        self.eps = eps
        self.low, self.high = _limits(threat, d)
        # rooms of a zero input: the constants of both matrices
        zero = np.zeros(d)
        self.Q0, P0 = _moved(zero, np.arange(d), eps, self.low, self.high)
        self.P0 = -P0
        self.pos = -np.sign(y) > 0  # rows the adversary pushes up
        counts = np.diff(X.indptr)
        up_row = np.repeat(self.pos, counts)
        cols = X.indices
        up, down = _moved(X.data, cols, eps, self.low, self.high)
        top, bottom = up - self.Q0[cols], down + self.P0[cols]
        del up, down
        self.S1 = sparse.csr_matrix((np.where(up_row, top, bottom), cols.copy(),
                                     X.indptr.copy()), shape=(n, d))
        self.S2 = sparse.csr_matrix((np.where(up_row, bottom, top), cols.copy(),
                                     X.indptr.copy()), shape=(n, d))
        del top, bottom, up_row
        # columns mostly non-zero: held whole, as dense column-major blocks
        # (their products read no indices), and left out of the sparse parts
        if full is None:
            full = np.flatnonzero(np.bincount(cols, minlength=d) >= _FULL_SHARE * max(n, 1))
        self.full = np.asarray(full, dtype=np.intp)
        self.W1 = np.asfortranarray(self.S1[:, self.full].toarray())
        self._pair(np.asfortranarray(self.S2[:, self.full].toarray()))
        if len(self.full):
            held = np.zeros(d, dtype=bool)
            held[self.full] = True
            for S in (self.S1, self.S2):
                S.data[held[S.indices]] = 0.0
        for S in (self.S1, self.S2):
            S.eliminate_zeros()  # inputs within eps of the box: at the constant
        # |M1_ij|, |M2_ij| <= max_j |x_ij| + eps: the bound of the zeros' change
        rowmax = np.zeros(n)
        filled = counts > 0
        if X.nnz:
            peaks = np.maximum.reduceat(np.abs(X.data), X.indptr[:-1][filled])
            rowmax[filled] = peaks
        self.row_bound = rowmax + eps
        #: stored entries of the kept rows per column (both parts)
        self.counts = (np.bincount(self.S1.indices, minlength=d)
                       + np.bincount(self.S2.indices, minlength=d)).astype(np.int64)
        self._block = {}
        self._zero_columns = {}
        #: the zeros' exact sums at the published model (:class:`ZeroSums`),
        #: or None: what the next request's first check starts from
        self.zero_sums = None

    def _pair(self, W2):
        """Hold the second matrix's dense columns ``W2`` as the first one's
        where they differ from them by ``s_i c_j`` (``s_i`` = +1 on the rows
        pushed up, -1 on the others) up to a few entries: on an input inside
        its box both rooms are ``eps``, so ``c_j = P0_j + Q0_j - 2 eps`` on
        every such entry. The other entries (zero inputs, inputs near a face)
        go to the sparse ``E``; a column with more than ``_PAIRED_SHARE`` of
        them stays dense (``W2``, on ``unpaired``). The one dense product is
        then shared by both one-sided derivatives."""
        n = W2.shape[0]
        c = self.P0[self.full] + self.Q0[self.full] - 2.0 * self.eps
        s = np.where(self.pos, 1.0, -1.0)[:, None]
        E = W2 - self.W1
        E -= s * c[None, :]
        # rounding of the matrices' entries is not a difference
        slack = np.abs(W2) + np.abs(self.W1) + np.abs(c)[None, :]
        slack *= 4.0 * np.finfo(np.float64).eps
        kept = np.abs(E) > slack
        del slack
        paired = kept.sum(axis=0) <= _PAIRED_SHARE * max(n, 1)
        self.paired = np.flatnonzero(paired)
        self.unpaired = np.flatnonzero(~paired)
        self.c = np.where(paired, c, 0.0)
        kept &= paired[None, :]
        E[~kept] = 0.0
        self.E = sparse.csr_matrix(E)
        self.E.eliminate_zeros()
        self.W2 = np.asfortranarray(W2[:, self.unpaired])

    def second_dense(self):
        """The second matrix's dense columns, rebuilt (for tests)."""
        W2 = self.W1 + np.where(self.pos, 1.0, -1.0)[:, None] * self.c[None, :]
        W2 += self.E.toarray()
        W2[:, self.unpaired] = self.W2
        return W2

    # ---- products -----------------------------------------------------------
    def scores(self, wp, wm):
        """Worst-case scores ``M1 w+ - M2 w-`` (no intercept)."""
        z = self.S1 @ wp - self.S2 @ wm
        if len(self.full):
            vp, vm = wp[self.full], wm[self.full].copy()
            vm[self.unpaired] = 0.0
            z += self.W1 @ (vp - vm)
            z -= self.E @ vm
            cm = float(self.c @ vm)
            if cm:
                z -= cm * np.where(self.pos, 1.0, -1.0)
            if len(self.unpaired):
                z -= self.W2 @ wm[self.full][self.unpaired]
        up = float(self.Q0 @ wp + self.P0 @ wm)
        down = -float(self.P0 @ wp + self.Q0 @ wm)
        z += np.where(self.pos, up, down)
        return z

    def sums(self, g, cols=None, others=None, only=None):
        """``(M1^T g, M2^T g)`` for per-row values ``g``, on the columns
        ``cols`` (all when None; ``others`` are the remaining ones, given
        with ``cols``). Few entries in ``cols``: from a copy of those columns,
        kept until they change. ``only='thin'`` or ``'dense'`` computes only
        the columns of the sparse parts or only the dense ones (:meth:`part_of`):
        the other entries of the result are then not the sums."""
        g_up = float(g @ self.pos)
        g_down = float(g.sum()) - g_up
        P0, Q0 = self.P0, self.Q0
        parts = (self.S1, self.S2)
        if cols is not None:
            P0, Q0 = P0[cols], Q0[cols]
            parts = (self._columns(cols, others) if only != "dense" else None) or (None, None)
            at = np.searchsorted(self.full, cols)
            at[at == len(self.full)] = 0
            held = self.full[at] == cols if len(self.full) else np.zeros(len(cols), bool)
            at = at[held]
        thin, dense = only != "dense", only != "thin"

        def sparse_part(part, whole, zero):
            # M^T g on the columns: the sparse part (of those columns or of
            # all) and the zero inputs' constants
            if not thin:
                return zero
            out = np.asarray(part.T @ g if part is not None else (whole.T @ g)[cols]).ravel()
            out += zero
            return out

        # two parts of about the same size, on two cores where allowed: the
        # first matrix's sparse part and the dense product's first rows; the
        # second's sparse part, its dense columns' share beyond the first
        # one's and the dense product's other rows
        n, kf = self.W1.shape
        kf = kf if dense else 0
        entries = [(whole if mine is None else mine).nnz if thin else 0 for mine, whole in
                   zip(parts, (self.S1, self.S2))]
        # (a stored entry reads 12 bytes, a dense one 8)
        rest = 1.5 * (entries[1] + self.E.nnz - entries[0]) + self.W2.size
        split = int(np.clip((n * kf + rest) / max(2 * kf, 1), 0, n)) if kf else 0

        def first():
            A = sparse_part(parts[0], self.S1, Q0 * g_up - P0 * g_down)
            return A, (self.W1[:split].T @ g[:split] if kf else None)

        def second():
            B = sparse_part(parts[1], self.S2, Q0 * g_down - P0 * g_up)
            if not kf:
                return B, None, None
            extra = self.E.T @ g + self.c * (g_up - g_down)
            if len(self.unpaired):
                extra[self.unpaired] = self.W2.T @ g
            return B, extra, self.W1[split:].T @ g[split:]

        (A, W1g), (B, extra, W1g_rest) = in_parallel(first, second)
        if kf:  # all dense columns at once: no copies
            W1g = W1g + W1g_rest
            W2g = extra
            W2g[self.paired] += W1g[self.paired]
            if cols is None:
                A[self.full] += W1g
                B[self.full] += W2g
            elif len(at):
                A[held] += W1g[at]
                B[held] += W2g[at]
        return A, B

    def part_of(self, cols):
        """Which of ``cols`` are held dense (True) or in the sparse parts."""
        held = np.zeros(len(self.Q0), dtype=bool)
        held[self.full] = True
        return held[cols]

    def _columns(self, cols, others):
        """The sparse parts on ``cols``, cached; None when those columns hold
        most entries (the whole matrices are then read)."""
        key = cols.tobytes()
        hit = self._zero_columns.get(key)
        if hit is not None:
            return hit
        self._zero_columns.clear()
        if self.counts[others].sum() < (1.0 - _ZERO_SHARE) * self.counts.sum():
            return None
        hit = self._zero_columns[key] = (self.S1[:, cols].tocsr(), self.S2[:, cols].tocsr())
        return hit

    def block(self, X, support, signs):
        """The worst-case rows on the ``support`` columns for weights of
        ``signs`` there (a :class:`SupportBlock`, all rows), cached until the
        support or a sign changes."""
        key = (support.tobytes(), signs.tobytes())
        B = self._block.get(key)
        if B is None:
            self._block.clear()
            B = self._block[key] = SupportBlock(X, support, signs, self)
        return B

    def purge(self, rows, zero_csr_rows):
        """Erase ``rows`` (values and, through ``zero_csr_rows``, the positions
        of the sparse parts' entries)."""
        rows = np.asarray(rows).ravel()
        for S in (self.S1, self.S2):
            self.counts -= np.bincount(S.indices[row_entries(S.indptr, rows)[0]],
                                       minlength=len(self.counts))
        zero_csr_rows(self.S1, rows)
        zero_csr_rows(self.S2, rows)
        self.W1[rows] = 0.0
        self.W2[rows] = 0.0
        zero_csr_rows(self.E, rows)
        self.row_bound[rows] = 0.0
        self.pos[rows] = False  # nor their labels' directions
        for B in self._block.values():
            B.purge(rows, zero_csr_rows)
        for parts in self._zero_columns.values():
            for S in parts:
                zero_csr_rows(S, rows)


class SupportBlock:
    """The worst-case rows of every row on the support's columns, for weights
    of given signs: per column, a constant for the rows pushed up and one for
    the others (the worst case of a zero input) plus a sparse part with the
    inputs' pattern; columns with at least ``_DENSE_SHARE`` non-zero inputs
    are held whole, as a dense column-major block.

    Its products (scores, column sums and the weighted Gram matrix) cost the
    stored entries, not rows x columns: on one-hot or mostly-zero columns a
    fraction of the dense block's.

    Parameters
    ----------
    X : sparse matrix of shape (n_samples, n_features), CSR
    support : ndarray of int
        The columns, sorted.
    signs : ndarray
        The weights' signs there (a 0 takes the room below on every row).
    wc : LogisticWorstCase
        The rows' worst cases (their directions ``pos`` are shared: erased
        rows are cleared there).
    """

    def __init__(self, X, support, signs, wc):
        n = X.shape[0]
        k = len(support)
        support = np.asarray(support)
        signs = np.asarray(signs, dtype=np.float64)
        self.wc = wc
        self.shape = (n, k)
        XS = sparse.csr_matrix(X[:, support])
        j = XS.indices
        up0, down0 = wc.Q0[support], -wc.P0[support]
        # the worst case of a zero input, rows pushed up and the others
        const_up = np.where(signs > 0, up0, down0)
        const_other = np.where(signs < 0, up0, down0)
        row_of = np.repeat(np.arange(n), np.diff(XS.indptr))
        pos = wc.pos[row_of]
        up, down = _moved(XS.data, support[j], wc.eps, wc.low, wc.high)
        toward = np.where(pos, signs[j] > 0, signs[j] < 0)
        values = np.where(toward, up, down)
        values -= np.where(pos, const_up[j], const_other[j])
        del up, down, toward, pos, row_of
        part = sparse.csr_matrix((values, j, XS.indptr), shape=(n, k))
        share = np.bincount(j, minlength=k) / max(n, 1)
        self.dense = np.flatnonzero(share >= _DENSE_SHARE)
        self.thin = np.flatnonzero(share < _DENSE_SHARE)
        self._dense_other = const_other[self.dense]
        D = np.asfortranarray(part[:, self.dense].toarray())
        D += np.where(wc.pos[:, None], const_up[self.dense][None, :],
                      self._dense_other[None, :])
        self.D = D
        S = part[:, self.thin].tocsr()
        S.eliminate_zeros()  # inputs within eps of the box: at the constant
        S.sort_indices()
        self.S = S
        self.up, self.other = const_up[self.thin], const_other[self.thin]
        self._rows = np.repeat(np.arange(n), np.diff(S.indptr))  # each entry's row
        self._up_rows = wc.pos.astype(np.float64)  # 1 on the rows pushed up
        self.products = self._products()

    def _products(self):
        """Each row's products of its stored entries with one another (on
        pairs ``j <= k``) and with its dense entries, and the entries
        themselves, plain and on the rows pushed up, as a sparse matrix whose
        column sums weighted by ``c`` give the thin columns' share of the Gram
        matrix (one pass); None when they would be too many."""
        S, D = self.S, self.D
        n, kt = S.shape[0], len(self.thin)
        kd = len(self.dense)
        if not kt:
            return None
        per_row = np.diff(S.indptr)
        within = np.arange(S.nnz) - np.repeat(S.indptr[:-1], per_row)
        later = np.repeat(per_row, per_row) - within  # entries from this one on
        total = int(later.sum()) + S.nnz * (kd + 2)
        if total > max(_PRODUCTS_PER_ENTRY * S.nnz, 1) or total > _MAX_PRODUCTS:
            return None
        left = np.repeat(np.arange(S.nnz), later)
        right = left + (np.arange(len(left)) - np.repeat(np.cumsum(later) - later, later))
        j, v, rows = S.indices, S.data, self._rows
        keys = [j[left] * kt + j[right]]
        values = [v[left] * v[right]]
        at = [rows[left]]
        for a in range(kd):
            keys.append(kt * kt + j * kd + a)
            values.append(v * D[rows, a])
            at.append(rows)
        base = kt * kt + kt * kd
        keys += [base + j, base + kt + j]
        values += [v, v * self._up_rows[rows]]
        at += [rows, rows]
        Q = sparse.coo_matrix((np.concatenate(values), (np.concatenate(at), np.concatenate(keys))),
                              shape=(n, base + 2 * kt)).tocsr()
        Q.sort_indices()
        return Q

    def scores(self, w):
        """The worst-case scores ``B w`` (no intercept) for weights ``w`` on
        the support (the dense and thin columns' shares at once, on two cores
        where allowed)."""
        w = np.asarray(w, dtype=np.float64)
        wt = w[self.thin]
        hi, lo = float(self.up @ wt), float(self.other @ wt)

        def thin_part():
            z = self.S @ wt
            if hi != lo:
                z += (hi - lo) * self._up_rows
            z += lo
            return z

        if not len(self.dense):
            return thin_part()
        if not len(self.thin):
            return self.D @ w[self.dense]
        zd, z = in_parallel(lambda: self.D @ w[self.dense], thin_part)
        z += zd
        return z

    def rmatvec(self, g):
        """``B^T g`` for per-row values ``g`` (the dense and thin columns'
        shares at once, on two cores where allowed)."""
        out = np.empty(self.shape[1])

        def thin_part():
            g_up = float(g @ self._up_rows)
            return self.S.T @ g + self.up * g_up + self.other * (float(g.sum()) - g_up)

        if not len(self.thin):
            out[self.dense] = self.D.T @ g
        elif len(self.dense):
            out[self.dense], out[self.thin] = in_parallel(lambda: self.D.T @ g, thin_part)
        else:
            out[self.thin] = thin_part()
        return out

    def gram(self, c, intercept=False):
        """``sum_i c_i [b_i, 1] [b_i, 1]^T`` over the rows ``b_i`` (the ``1``
        with ``intercept``): the thin columns from their stored entries and
        constants, the dense ones from their block."""
        k = self.shape[1]
        H = np.zeros((k + int(intercept),) * 2)
        dense, thin, D, S = self.dense, self.thin, self.D, self.S
        kt, kd = len(thin), len(dense)
        c_up = c * self._up_rows
        s_all, s_up = float(c.sum()), float(c_up.sum())
        s_other = s_all - s_up

        def dense_part():
            return _gram_dense(D, c), D.T @ c, D.T @ c_up

        def thin_part():
            Q = self.products
            if Q is not None:
                q = Q.T @ c
                G = np.triu(q[: kt * kt].reshape(kt, kt))
                G += np.triu(G, 1).T
                base = kt * kt + kt * kd
                cross = q[kt * kt : base].reshape(kt, kd)
                t_all, t_up = q[base : base + kt], q[base + kt :]
            else:
                Sc = sparse.csr_matrix((S.data * c[self._rows], S.indices, S.indptr),
                                       shape=S.shape)
                G = (S.T @ Sc).toarray()
                cross = (np.column_stack([Sc.T @ D[:, j] for j in range(kd)]) if kd
                         else None)
                t_all, t_up = S.T @ c, S.T @ c_up
            return G, cross, t_all, t_up

        # the dense and the thin columns' shares at once, on two cores where allowed
        tasks = ([dense_part] if kd else []) + ([thin_part] if kt else [])
        parts = in_parallel(*tasks)
        if kd:
            Hdd, vd_all, vd_up = parts[0]
            H[np.ix_(dense, dense)] = Hdd
            if intercept:
                H[dense, k] = H[k, dense] = vd_all
        if kt:
            G, cross, t_all, t_up = parts[-1]
            a, b = self.up, self.other
            t_other = t_all - t_up
            G += np.outer(a, t_up) + np.outer(t_up, a) + np.outer(b, t_other) \
                + np.outer(t_other, b) + s_up * np.outer(a, a) + s_other * np.outer(b, b)
            H[np.ix_(thin, thin)] = G
            if kd:
                C = cross + np.outer(a, vd_up) + np.outer(b, vd_all - vd_up)
                H[np.ix_(thin, dense)] = C
                H[np.ix_(dense, thin)] = C.T
            if intercept:
                H[thin, k] = H[k, thin] = t_all + a * s_up + b * s_other
        if intercept:
            H[k, k] = s_all
        return H

    def toarray(self):
        """The block as a dense array (for tests and small problems)."""
        B = np.empty(self.shape)
        B[:, self.dense] = self.D
        B[:, self.thin] = self.S.toarray() + np.where(
            self.wc.pos[:, None], self.up[None, :], self.other[None, :])
        return B

    def purge(self, rows, zero_csr_rows):
        """Erase ``rows``: their dense entries become those of a zero input of
        a row pushed down (as a block built afresh from the erased inputs
        holds), their stored entries and positions are cleared."""
        self.D[rows] = self._dense_other
        self._up_rows[rows] = 0.0
        zero_csr_rows(self.S, rows)
        if self.products is not None:
            zero_csr_rows(self.products, rows)


def _gram_dense(D, c):
    """``D^T diag(c) D`` of a column-major block: by pairs of columns when
    they are few (one product per pair), else a block of rows at a time (the
    scaled rows stay in the processor's cache)."""
    n, k = D.shape
    if k <= _PAIRWISE:
        H = np.empty((k, k))
        scaled = np.empty(n)
        for a in range(k):
            np.multiply(D[:, a], c, out=scaled)
            H[a, a:] = scaled @ D[:, a:]
            H[a:, a] = H[a, a:]
        return H
    per = max(1, min(n, _BLOCK_ENTRIES // max(k, 1)))
    buf = np.empty((per, k), order="F")
    H = np.zeros((k, k))
    if np.all(c >= 0):
        root = np.sqrt(c)
        for a in range(0, n, per):
            B = buf[: min(per, n - a)]
            np.multiply(D[a : a + per], root[a : a + per, None], out=B)
            H += B.T @ B
    else:
        for a in range(0, n, per):
            B = buf[: min(per, n - a)]
            np.multiply(D[a : a + per], c[a : a + per, None], out=B)
            H += D[a : a + per].T @ B
    return H


class Checkpoint:
    """What one pass at ``theta`` found (see :func:`checkpoint`).

    Attributes
    ----------
    value : float
        The mean objective (regulariser and linear term included).
    residual : ndarray of shape (n_params,)
        The minimal subgradient of the mean objective.
    cols : ndarray of int
        The free coordinates (the support and the intercept).
    g, H : ndarray
        Summed gradient and total Hessian on ``cols``, the regulariser's
        share included, the linear term not (a forgetter's memory; ``H`` is
        computed when first read).
    g1 : ndarray of shape (n_samples,)
        The rows' weighted loss derivatives.
    zeros : ndarray of int
        The zero weights.
    zero_up, zero_down : ndarray
        Lower bounds (exact after a full pass) of the one-sided mean
        derivatives at the zeros, ``w_j`` increasing and decreasing; a zero is
        optimal when both are >= 0.
    zero_exact, zero_sums : ndarray of bool, (ndarray, ndarray)
        The zeros whose sums ``M1^T g1``, ``M2^T g1`` were summed exactly here,
        and those sums (None, (None, None) where all were bounded).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def complete(self):
        """Take the zeros' conditions of a point made with ``defer``
        (nothing when they are taken already); returns the point."""
        if self.pending is not None:
            args, self.pending = self.pending, None
            _zero_conditions(self, *args)
        return self

    @property
    def H(self):
        """The summed total Hessian on ``cols`` (computed on first use: a step
        from this point or the memory of a published one needs it)."""
        if self._H is None:
            obj, block, c, m = self._hessian_from
            H = block.gram(c, obj.fit_intercept)
            k = len(self.cols)
            H[np.arange(k), np.arange(k)] += obj.regulariser_diag(m, self.cols)
            self._H, self._hessian_from = H, None
        return self._H


def checkpoint(rp, wc, obj, theta, y, weights, m, reference=None, fresh=False,
               defer=False):
    """One pass of the logistic l_inf objective at ``theta`` over the rows of
    ``weights`` (None: all), from the prepared pass ``rp`` and its worst cases
    ``wc``; a :class:`Checkpoint`, or None when the support is too large for
    its dense columns.

    With a ``reference`` checkpoint of the same support and signs, the zeros'
    one-sided derivatives are not summed again but bounded: each is
    ``sum_i g1_i M_ij / m``, whose entries are at most ``max_j |x_ij| + eps``
    in magnitude, so it moved by at most ``e = sum_i |g1_i - g1'_i|
    (max_j |x_ij| + eps) / m``. Where every zero's lower bounds minus ``e``
    stay >= 0, every zero is optimal at ``theta`` too and the minimal
    subgradient is exactly 0 there; otherwise the pass sums them. Without
    one, the zeros' sums kept at the published model (:class:`ZeroSums`)
    serve the same way for the part of the columns they hold exactly, and
    the other part is summed; ``fresh`` sums them all.

    With ``defer`` the zeros are left for later (``point.pending``; their
    residual entries are 0 meanwhile): :meth:`Checkpoint.complete` takes
    them when the point may be published. A point where the support's own
    residual already calls for a step needs no zeros.
    """
    from ._pass import _SUPPORT_COLUMNS, cacheable

    d = obj.n_features
    theta = np.asarray(theta, dtype=np.float64)
    w = theta[:d]
    b = float(theta[d]) if obj.fit_intercept else 0.0
    support = np.flatnonzero(w)
    signs = np.sign(w[support])
    n = rp.X.shape[0]
    if len(support) > _SUPPORT_COLUMNS or not cacheable(n, len(support) + 1):
        return None
    block = wc.block(rp.X, support, signs)
    z = block.scores(w[support])
    z += b
    values, g1, c = obj.loss.terms(z, y, weights)
    alpha = obj.alpha
    lt = obj.linear_term
    value = float(values.sum()) / m + 0.5 * alpha * float(w @ w)
    if lt is not None:
        value += float(lt @ theta) / m
    # summed gradient and total Hessian on the free coordinates
    cols = np.concatenate([support, [d]]) if obj.fit_intercept else support
    gS = block.rmatvec(g1)
    g = np.concatenate([gS, [g1.sum()]]) if obj.fit_intercept else gS
    g = g + obj.regulariser_grad(theta, m, cols)
    zeros = np.flatnonzero(w == 0)
    residual = np.zeros(obj.n_params)
    mean = g / m
    if lt is not None:
        mean = mean + lt[cols] / m
    residual[cols] = mean
    point = Checkpoint(value=value, residual=residual, cols=cols, g=g, g1=g1,
                       support=support, signs=signs, zeros=zeros, zero_up=None,
                       zero_down=None, zero_exact=None, zero_sums=(None, None),
                       theta=theta.copy(), pending=(wc, obj, m, reference, fresh),
                       _H=None, _hessian_from=(obj, block, c, m))
    if not defer:
        point.complete()
    return point


def _change(g1, ref, bound):
    """``(sum_i |g1_i - ref_i| bound_i, sum_i |g1_i| bound_i)``, a block of
    rows at a time (the temporaries stay in the processor's cache)."""
    n = len(g1)
    per = min(n, _TERMS_BLOCK)
    buf = np.empty(per)
    change = size = 0.0
    for a in range(0, n, per):
        b = min(n, a + per)
        t = buf[: b - a]
        np.subtract(g1[a:b], ref[a:b], out=t)
        np.abs(t, out=t)
        change += float(t @ bound[a:b])
        np.abs(g1[a:b], out=t)
        size += float(t @ bound[a:b])
    return change, size


def _zero_conditions(point, wc, obj, m, reference, fresh):
    """The zeros' part of a checkpoint (see :func:`checkpoint`): their lower
    bounds and, where summed, their exact sums; the minimal subgradient there."""
    g1, zeros, support, signs = point.g1, point.zeros, point.support, point.signs
    lt = obj.linear_term
    residual = point.residual
    certified = False
    exact = sums_A = sums_B = None  # the zeros summed exactly here, and their sums
    if reference is not None and reference.pending is None \
            and np.array_equal(reference.support, support) \
            and np.array_equal(reference.signs, signs):
        change, size = _change(g1, reference.g1, wc.row_bound)
        moved = (change * (1.0 + _ROUNDING) + _ROUNDING * size) / m
        zero_up = reference.zero_up - moved
        zero_down = reference.zero_down - moved
        certified = bool(np.all(zero_up >= 0) and np.all(zero_down >= 0))
    elif not fresh and _ACROSS_REQUESTS and wc.zero_sums is not None \
            and np.array_equal(wc.zero_sums.zeros, zeros):
        # the published model's exact sums (a part of the zeros' columns):
        # those columns bounded from them, the others summed here
        kept = wc.zero_sums
        change, size = _change(g1, kept.g1, wc.row_bound)
        # (|g1'| <= |g1| + |g1 - g1'|: the rounding of both sums)
        moved = change * (1.0 + 2.0 * _ROUNDING) + 2.0 * _ROUNDING * size
        sums_A, sums_B = kept.A - moved, kept.B + moved  # M1^T g >= .., M2^T g <= ..
        exact = ~kept.exact
        if exact.any():
            dense = wc.part_of(zeros)
            for only, sel in (("thin", exact & ~dense), ("dense", exact & dense)):
                if sel.any():
                    A, B = wc.sums(g1, zeros, support, only=only)
                    sums_A[sel], sums_B[sel] = A[sel], B[sel]
        zero_up, zero_down = sums_A / m, -sums_B / m
        if lt is not None:
            zero_up += lt[zeros] / m
            zero_down -= lt[zeros] / m
        certified = bool(np.all(zero_up >= 0) and np.all(zero_down >= 0))
        if not certified:
            exact = sums_A = sums_B = None
    if not certified:
        sums_A, sums_B = wc.sums(g1, zeros, support)
        exact = np.ones(len(zeros), dtype=bool)
        gp = sums_A / m
        gm = -sums_B / m
        if lt is not None:
            gp += lt[zeros] / m
            gm -= lt[zeros] / m
        residual[zeros] = min_norm_subgradient(gp, gm, np.zeros(len(zeros)))
        zero_up, zero_down = gp, gm
    point.zero_up, point.zero_down = zero_up, zero_down
    point.zero_exact, point.zero_sums = exact, (sums_A, sums_B)


class ZeroSums:
    """The zeros' sums ``M1^T g1`` and ``M2^T g1`` at a published model, over
    its kept rows, exact on the columns ``exact`` (a part: the sparse or the
    dense ones). The next request's first check bounds those columns from
    them (each sum moved by at most ``sum_i |g1_i - g1'_i| (max_j |x_ij| +
    eps)``, removed rows included: their ``g1`` is 0 afterwards) and sums the
    others, so that each request reads about half of the zeros' entries.
    Everything here is a function of the kept rows and the published model;
    the estimator's purge drops it otherwise
    (:meth:`~skmuter.linear.LinearObjective.drop_stale_zero_sums`)."""

    def __init__(self, theta, zeros, g1, A, B, exact):
        self.theta, self.zeros, self.g1 = theta, zeros, g1
        self.A, self.B, self.exact = A, B, exact


def keep_zero_sums(wc, point):
    """Keep the zeros' exact sums of the published ``point`` for the next
    request (:class:`ZeroSums`), summing one part of them first where the
    point has none exact (a correction step's point, certified by a bound)."""
    zeros = point.zeros
    exact, (A, B) = point.zero_exact, point.zero_sums
    if exact is None or (len(zeros) and not exact.any()):
        dense = wc.part_of(zeros)
        # the sparse columns where there are (the part a first check sums
        # next is then the other one)
        only = "thin" if (~dense).any() else "dense"
        exact = ~dense if only == "thin" else dense
        A, B = wc.sums(point.g1, zeros, point.support, only=only)
        point.zero_exact, point.zero_sums = exact, (A, B)
    old = wc.zero_sums
    wc.zero_sums = ZeroSums(point.theta, zeros, point.g1, np.where(exact, A, 0.0),
                            np.where(exact, B, 0.0), exact.copy())
    record_undo(lambda: setattr(wc, "zero_sums", old))
