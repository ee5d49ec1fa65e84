"""The README's quick start runs as written."""

import re
from pathlib import Path


def test_readme_quick_start_runs(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (the README is ours)
    report = namespace["forget_report"](namespace["est"], namespace["before"],
                                        namespace["X_test"], namespace["y_test"])
    assert report["residual_fraction"] < 0.05
    assert "solve_time" in capsys.readouterr().out
