"""Progress bars that draw only where someone watches them.

A tqdm bar redraws itself with carriage returns: on a terminal that is one
line updating in place, in a log file or a pipe it is hundreds of ``\\r``
fragments. :func:`progress` is the one way the package makes a bar: it is
drawn on ``sys.stderr`` only when that stream is a terminal (or in a
notebook, where tqdm draws a widget), and is a silent pass-through
otherwise. Every progress bar of the package goes through it.
"""

from __future__ import annotations

import sys

__all__ = ["progress", "shows_progress"]


def shows_progress() -> bool:
    """Whether a progress bar would be drawn now: stderr is a terminal, or a notebook."""
    import tqdm.auto  # noqa: F401 - first, as it silences autonotebook's notebook warning
    from tqdm.autonotebook import tqdm as auto_tqdm
    from tqdm.std import tqdm as std_tqdm

    if auto_tqdm is not std_tqdm:  # a notebook: tqdm draws a widget, not characters
        return True
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress(iterable=None, *, enabled=True, **tqdm_kwargs):
    """A tqdm progress bar on stderr, off unless ``enabled`` and someone can see it.

    Parameters
    ----------
    iterable : iterable, default=None
        What to iterate over; ``None`` for a bar updated by hand
        (``total=...`` and ``bar.update(n)``).
    enabled : bool, default=True
        ``False`` turns the bar off whatever the stream.
    **tqdm_kwargs
        Passed to ``tqdm.auto.tqdm`` (``desc``, ``total``, ``unit``, ...).

    Returns
    -------
    bar : tqdm.auto.tqdm
        Disabled (it iterates and counts but writes nothing) when stderr is
        not a terminal, for example redirected to a file or a pipe.

    Examples
    --------
    >>> from skmuter._progress import progress
    >>> sum(progress(range(4), desc="demo"))  # stderr is not a terminal here
    6
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (enabled and shows_progress()), **tqdm_kwargs)
