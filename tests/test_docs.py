"""The docs' offline intersphinx fallback: inventories Sphinx reads, for the names linked.

The full nitpicky build (``sphinx -n -W``) runs in ``.ci/run``; these checks are fast.
"""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _conf():
    spec = importlib.util.spec_from_file_location("skmuter_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_fallback_inventories_load_with_the_real_addresses(tmp_path):
    from sphinx.util.inventory import InventoryFile

    conf = _conf()
    assert set(conf.FALLBACK) == set(conf.INTERSPHINX)
    assert {"numpy", "scipy", "sklearn", "torch", "skorch"} <= set(conf.INTERSPHINX)
    for project, base in conf.INTERSPHINX.items():
        path = tmp_path / f"{project}.inv"
        conf._write_inventory(path, project, conf.FALLBACK[project])
        inventory = InventoryFile.loads(path.read_bytes(), uri=base)
        data = getattr(inventory, "data", inventory)  # Sphinx 8.2+: an object; before: a dict
        for name, role, _, _ in conf.FALLBACK[project]:
            entry = data[role][name]
            uri = entry.uri if hasattr(entry, "uri") else entry[2]
            assert uri.startswith(base) and "$" not in uri and " " not in uri


class _Config:
    intersphinx_mapping = None


class _App:
    def __init__(self, doctreedir):
        self.doctreedir = doctreedir


def test_every_project_falls_back_to_a_local_inventory_in_the_build(tmp_path):
    conf = _conf()
    config = _Config()
    conf._intersphinx_with_fallbacks(_App(tmp_path / ".doctrees"), config)
    for project, (base, locations) in config.intersphinx_mapping.items():
        assert base == conf.INTERSPHINX[project]
        assert locations[0] is None  # the site's own objects.inv first
        assert Path(locations[1]).is_file() and str(tmp_path) in locations[1]


def test_ci_builds_the_docs_nitpicky_and_with_warnings_as_errors():
    ci = (DOCS.parent / ".ci" / "run").read_text()
    assert "python -m sphinx -n -W --keep-going" in ci
