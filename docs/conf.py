"""Sphinx configuration of the skmuter documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

The API pages of optional modules (``skmuter.nn`` needs torch and skorch;
``skmuter.datasets``, ``skmuter.benchmark`` and ``skmuter.cli`` may be absent
from a checkout) are built only when the module imports, and the examples
page lists whatever ``examples/*.py`` holds, so the build never documents a
name that does not exist.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import skmuter

project = "skmuter"
author = "the skmuter developers"
copyright = "the skmuter developers, BSD-3-Clause"
version = release = skmuter.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "Adversarially trained models that forget", "fixed_sidebar": True}

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# API pages of modules that may not import here: page name -> module.
OPTIONAL_API = {
    "api/nn": "skmuter.nn",
    "api/datasets": "skmuter.datasets",
    "api/benchmark": "skmuter.benchmark",
    "api/cli": "skmuter.cli",
}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - ImportError, or an optional dependency failing
        return False
    return True


AVAILABLE_API = [page for page, module in OPTIONAL_API.items() if _importable(module)]
exclude_patterns += [f"{page}.rst" for page in OPTIONAL_API if page not in AVAILABLE_API]


def _api_toctree() -> str:
    pages = ["api/estimators", "api/forgetters", "api/attacks", "api/metrics",
             "api/pipeline", "api/certified", "api/linear", *AVAILABLE_API]
    entries = "\n".join(f"   {page.removeprefix('api/')}" for page in pages)
    return f".. toctree::\n   :maxdepth: 2\n\n{entries}\n"


def _examples() -> str:
    files = sorted((ROOT / "examples").glob("*.py"))
    if not files:
        return "The repository's ``examples`` folder holds no script yet.\n"
    parts = []
    for path in files:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        title = doc.strip().splitlines()[0].rstrip(".") if doc.strip() else path.stem
        rest = "\n".join(doc.strip().splitlines()[1:]).strip()
        parts.append(
            f"{title}\n{'-' * len(title)}\n\n"
            f"``examples/{path.name}``\n\n"
            + (f"{rest}\n\n" if rest else "")
            + f".. literalinclude:: ../examples/{path.name}\n"
            f"   :language: python\n   :linenos:\n"
        )
    return "\n".join(parts)


def _fill_generated(app, docname, source):
    if docname == "api/index":
        source[0] = source[0].replace(".. generated-api-toctree::\n", _api_toctree())
    elif docname == "examples":
        source[0] = source[0].replace(".. generated-examples::\n", _examples())


# Members inherited from these packages are theirs to document (and their
# docstrings point to labels of their own sites): list skmuter's own only.
FOREIGN = ("sklearn", "skorch", "torch", "builtins")


def _defined_in(obj) -> str:
    target = getattr(obj, "fget", obj)  # properties
    return getattr(target, "__module__", None) or "builtins"


def _skip_foreign(app, what, name, obj, skip, options):
    if what == "class" and _defined_in(obj).split(".")[0] in FOREIGN:
        return True
    return None


def _escape_star_shapes(app, what, name, obj, options, lines):
    # NumPy's shape notation "(n_samples, *input_shape)" in a parameter type
    # would open reST emphasis: escape the star.
    for i, line in enumerate(lines):
        if "shape (" in line and "*" in line:
            lines[i] = re.sub(r"(?<=[(,] )\*(?=\w)|(?<=\()\*(?=\w)", r"\\*", line)


def setup(app):
    app.connect("source-read", _fill_generated)
    app.connect("autodoc-process-docstring", _escape_star_shapes)
    app.connect("autodoc-skip-member", _skip_foreign)
