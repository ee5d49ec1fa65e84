"""Sphinx configuration of the skmuter documentation.

Build with ``python -m sphinx -n -W --keep-going -b html docs docs/_build/html``
(``-n``: every cross-reference must resolve, to skmuter's pages or, through
intersphinx, to the documentation of Python, NumPy, SciPy, pandas,
scikit-learn, joblib, PyTorch and skorch).

The build works offline. Each intersphinx project has two locations: its
site's ``objects.inv``, then a small fallback inventory that this file writes
into the build's doctree folder when the build starts (never into the
sources), listing only the external names these docs link to, with their
real addresses on those sites (:data:`FALLBACK`). Online the sites' own
inventories are used; offline the first location fails (logged at info
level, not a warning) and the fallback gives the same links. A new external
reference therefore needs one line in :data:`FALLBACK`, or the offline build
reports it.

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
import zlib
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
    "sphinx.ext.intersphinx",
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
numpydoc_xref_param_type = True
# Words of the parameter-type prose ("ndarray of shape (n_samples, n_features)",
# "fitted skmuter estimator", "float64 in [0, 1]"): text, not names to link.
numpydoc_xref_ignore = {
    "of", "shape", "or", "and", "default", "optional", "a", "the", "in", "on", "with",
    "but", "same", "exactly", "before", "after", "ignored", "instance", "fitted", "copy",
    "estimator", "estimators", "forgetter", "attack", "skmuter", "interface", "class",
    "parameter", "name", "objectives", "rows", "remaining", "retrained", "tuples",
    "matrix", "sparse", "min", "max", "low", "high", "float64", "k", "n", "n_samples",
    "n_features", "n_classes", "n_remaining", "n_heldout", "n_forgotten", "n_params",
    "n_outputs", "n_rows", "n_objectives", "n_removed", "n_requests", "n_kept",
    "labels", "index", "torch", "skorch", "transformer", "transformers", "columns",
    # a private class, documented nowhere: its dotted name stays text
    "skmuter.nn._attacks.TorchThreat",
}
# Short names in parameter types, linked to where they are documented.
numpydoc_xref_aliases = {
    "DataFrame": "pandas.DataFrame",
    "Series": "pandas.Series",
    "Path": "pathlib.Path",
    "path-like": ":term:`path-like <python:path-like object>`",
    "PGD": "skmuter.attacks.PGD",
    "FGSM": "skmuter.attacks.FGSM",
    "Penalized": "skmuter.attacks.Penalized",
    "Threat": "skmuter.attacks.Threat",
    "AdversarialLogisticRegression": "skmuter.AdversarialLogisticRegression",
    "AdversarialRidgeClassifier": "skmuter.AdversarialRidgeClassifier",
    "AdversarialRidge": "skmuter.AdversarialRidge",
    "CertifiedRemoval": "skmuter.certified.CertifiedRemoval",
    "LinearObjective": "skmuter.linear.LinearObjective",
    "Ties": "skmuter.linear._kinks.Ties",
    "Pipeline": "sklearn.pipeline.Pipeline",
    "ForgetPipeline": "skmuter.pipeline.ForgetPipeline",
    "Tensor": "torch.Tensor",
    "tensor": "torch.Tensor",
    "Module": "torch.nn.Module",
    "Dataset": "torch.utils.data.Dataset",  # skorch's Dataset is one
    "CSR": "scipy.sparse.csr_matrix",
    "CSC": "scipy.sparse.csc_matrix",
}

# ---- intersphinx, online and offline ---------------------------------------------
#: project -> base address of its documentation
INTERSPHINX = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "pandas": "https://pandas.pydata.org/docs/",
    "sklearn": "https://scikit-learn.org/stable/",
    "joblib": "https://joblib.readthedocs.io/en/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "skorch": "https://skorch.readthedocs.io/en/stable/",
}

#: project -> (name, domain:role, address relative to the base, shown text or "-"):
#: the external names these docs link to, as the projects' own inventories list
#: them (numpydoc's default type aliases among them).
FALLBACK = {
    "python": [
        ("int", "py:class", "library/functions.html#int", "-"),
        ("float", "py:class", "library/functions.html#float", "-"),
        ("bool", "py:class", "library/functions.html#bool", "-"),
        ("str", "py:class", "library/stdtypes.html#str", "-"),
        ("list", "py:class", "library/stdtypes.html#list", "-"),
        ("tuple", "py:class", "library/stdtypes.html#tuple", "-"),
        ("dict", "py:class", "library/stdtypes.html#dict", "-"),
        ("callable", "py:function", "library/functions.html#callable", "-"),
        ("None", "py:data", "library/constants.html#None", "-"),
        ("True", "py:data", "library/constants.html#True", "-"),
        ("False", "py:data", "library/constants.html#False", "-"),
        ("pathlib.Path", "py:class", "library/pathlib.html#pathlib.Path", "-"),
        ("typing.Protocol", "py:class", "library/typing.html#typing.Protocol", "-"),
        ("threading.Lock", "py:function", "library/threading.html#threading.Lock", "-"),
        ("bltin-boolean-values", "std:label", "library/stdtypes.html#bltin-boolean-values",
         "Boolean Values"),
        ("iterable", "std:term", "glossary.html#term-iterable", "-"),
        ("sequence", "std:term", "glossary.html#term-sequence", "-"),
        ("generator", "std:term", "glossary.html#term-generator", "-"),
        ("path-like object", "std:term", "glossary.html#term-path-like-object", "-"),
    ],
    "numpy": [
        ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#numpy.ndarray",
         "-"),
        ("numpy.random.RandomState", "py:class",
         "reference/random/legacy.html#numpy.random.RandomState", "-"),
        ("numpy.random.Generator", "py:class",
         "reference/random/generator.html#numpy.random.Generator", "-"),
        ("array_like", "std:term", "glossary.html#term-array_like", "-"),
        ("arrays.scalars", "std:label", "reference/arrays.scalars.html#arrays-scalars",
         "Scalars"),
    ],
    "scipy": [
        ("scipy.sparse", "py:module", "reference/sparse.html#module-scipy.sparse", "-"),
        *((f"scipy.sparse.{name}", "py:class",
           f"reference/generated/scipy.sparse.{name}.html#scipy.sparse.{name}", "-")
          for name in ("csr_matrix", "csc_matrix", "csr_array", "csc_array")),
    ],
    "pandas": [
        ("pandas.DataFrame", "py:class", "reference/api/pandas.DataFrame.html#pandas.DataFrame",
         "-"),
        ("pandas.Series", "py:class", "reference/api/pandas.Series.html#pandas.Series", "-"),
        ("pandas.Index", "py:class", "reference/api/pandas.Index.html#pandas.Index", "-"),
    ],
    "sklearn": [
        *((name, "py:class", f"modules/generated/{name}.html#{name}", "-") for name in (
            "sklearn.pipeline.Pipeline",
            "sklearn.preprocessing.StandardScaler",
            "sklearn.preprocessing.MinMaxScaler",
            "sklearn.preprocessing.FunctionTransformer",
            "sklearn.preprocessing.PolynomialFeatures",
            "sklearn.impute.SimpleImputer",
            "sklearn.compose.ColumnTransformer",
            "sklearn.model_selection.GridSearchCV",
            "sklearn.linear_model.LogisticRegression",
        )),
        ("sklearn.pipeline.Pipeline.fit", "py:method",
         "modules/generated/sklearn.pipeline.Pipeline.html#$", "-"),
        ("sklearn.pipeline.make_pipeline", "py:function",
         "modules/generated/sklearn.pipeline.make_pipeline.html#$", "-"),
    ],
    "joblib": [
        ("joblib.Memory", "py:class", "generated/joblib.Memory.html#joblib.Memory", "-"),
        ("joblib.load", "py:function", "generated/joblib.load.html#joblib.load", "-"),
    ],
    "torch": [
        ("torch.Tensor", "py:class", "tensors.html#torch.Tensor", "-"),
        ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module",
         "-"),
        ("torch.device", "py:class", "tensor_attributes.html#torch.device", "-"),
        ("torch.dtype", "py:class", "tensor_attributes.html#torch.dtype", "-"),
        ("torch.utils.data.Dataset", "py:class", "data.html#torch.utils.data.Dataset", "-"),
    ],
    "skorch": [
        ("skorch.classifier.NeuralNetClassifier", "py:class",
         "classifier.html#skorch.classifier.NeuralNetClassifier", "-"),
        *((f"skorch.net.NeuralNet.{name}", "py:method",
           f"net.html#skorch.net.NeuralNet.{name}", "-")
          for name in ("initialize_module", "get_params_for_optimizer",
                       "get_all_learnable_params", "predict", "predict_proba")),
        ("skorch.net.NeuralNet", "py:class", "net.html#skorch.net.NeuralNet", "-"),
        ("skorch.dataset.Dataset", "py:class", "dataset.html#skorch.dataset.Dataset", "-"),
        ("skorch.dataset.ValidSplit", "py:class", "dataset.html#skorch.dataset.ValidSplit",
         "-"),
        ("skorch.callbacks.EpochScoring", "py:class",
         "callbacks.html#skorch.callbacks.EpochScoring", "-"),
    ],
}

intersphinx_timeout = 10  # seconds per site: an offline build must not hang


def _write_inventory(path: Path, project: str, entries) -> None:
    """An ``objects.inv`` in Sphinx's version 2 format: four header lines, then
    zlib-compressed ``name domain:role priority address shown`` lines."""
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
              "# The remainder of this file is compressed using zlib.\n")
    body = "".join(f"{name} {role} 1 {uri} {shown}\n" for name, role, uri, shown in entries)
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


def _intersphinx_with_fallbacks(app, config):
    # Before intersphinx validates the mapping (its handler runs at priority 800).
    folder = Path(app.doctreedir) / "intersphinx-fallback"
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, base in INTERSPHINX.items():
        local = folder / f"{project}.inv"
        _write_inventory(local, project, FALLBACK[project])
        mapping[project] = (base, (None, str(local)))
    config.intersphinx_mapping = mapping

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
             "api/pipeline", "api/certified", "api/linear", *AVAILABLE_API,
             "api/contract"]
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
    app.connect("config-inited", _intersphinx_with_fallbacks, priority=400)
    app.connect("source-read", _fill_generated)
    app.connect("autodoc-process-docstring", _escape_star_shapes)
    app.connect("autodoc-skip-member", _skip_foreign)
