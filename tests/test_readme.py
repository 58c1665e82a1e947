"""The README's promises: its Python example runs, and its CLI table lists every command."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """Run the first ```python block of the README in a scratch folder (with ``data/``)."""
    blocks = _python_blocks(README.read_text())
    assert blocks, "README.md has no ```python block"
    code = blocks[0]
    n_lines = len([ln for ln in code.splitlines() if ln.strip()])
    assert n_lines <= 12, f"the README example should stay short (~10 lines), it has {n_lines}"
    data = ROOT / "data" / "demo_survey.parquet"
    if not data.is_file():
        pytest.skip(f"{data} is missing (the bundled demo survey)")
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README) + ":python-example", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().strip(), "the README example printed nothing"


def test_readme_cli_table_lists_every_command():
    """Each ``bayesdsm`` subcommand appears as a row of the README's command table."""
    from bayesdsm.cli import COMMANDS

    text = README.read_text()
    rows = set(re.findall(r"^\|\s*`bayesdsm ([a-z0-9-]+)[^`]*`", text, flags=re.M))
    missing = sorted(set(COMMANDS) - rows)
    assert not missing, f"README's CLI table lacks: {missing}"
    stale = sorted(rows - set(COMMANDS))
    assert not stale, f"README's CLI table lists commands that do not exist: {stale}"


def test_readme_links_every_notebook():
    text = README.read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        assert f"notebooks/{nb.name}" in text, f"README does not link {nb.name}"
