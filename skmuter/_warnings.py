"""Warnings that point at the caller's line, not inside the library."""

from __future__ import annotations

import inspect
import os
import warnings


class ForgetWarning(UserWarning):
    """A forget request was solved with a fallback (damping or least squares)."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """Stack level of the first frame outside the skmuter package.

    Counts the frames from the caller of this function up to (not including)
    the first frame whose file lies outside the package.
    """
    frame = inspect.currentframe()
    level = 0
    try:
        # skip this function's own frame
        frame = frame.f_back if frame is not None else None
        while frame is not None:
            filename = os.path.abspath(frame.f_code.co_filename)
            if not filename.startswith(_PACKAGE_DIR + os.sep):
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
