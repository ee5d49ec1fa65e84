"""Warnings that point at the caller's line, not inside the library."""

from __future__ import annotations

import importlib.util
import inspect
import os
import warnings


class ForgetWarning(UserWarning):
    """A forget request was solved with a fallback (damping or least squares)."""


def _package_dir(name):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames of the frameworks that call into skmuter on the user's behalf (the
# ``fit`` wrapper of scikit-learn, skorch's loops) are skipped as well, so that
# a warning raised during ``fit`` points at the user's call.
_SKIPPED = tuple(d + os.sep for d in [_PACKAGE_DIR, *map(_package_dir, ("sklearn", "skorch"))]
                 if d is not None)


def user_stacklevel() -> int:
    """Stack level of the first frame outside skmuter (and the frameworks
    that call it: scikit-learn, skorch).

    Counts the frames from the caller of this function up to (not including)
    the first frame whose file lies outside those packages.
    """
    frame = inspect.currentframe()
    level = 0
    try:
        # skip this function's own frame
        frame = frame.f_back if frame is not None else None
        while frame is not None:
            filename = os.path.abspath(frame.f_code.co_filename)
            if not filename.startswith(_SKIPPED):
                break
            level += 1
            frame = frame.f_back
    finally:
        del frame
    return max(level, 1)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside skmuter."""
    # user_stacklevel counts this function's frame among the library's; the
    # first frame outside is one level further up
    warnings.warn(message, category, stacklevel=user_stacklevel() + 1)
