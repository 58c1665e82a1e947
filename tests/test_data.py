"""bayesdsm.data: the demo survey is package data (a symlink to data/ in the repository)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest

from bayesdsm import data
from bayesdsm.errors import BayesDSMError

ROOT = Path(__file__).resolve().parents[1]
REPO_FILE = ROOT / "data" / data.DEMO_FILE


def test_package_data_is_the_repository_file():
    # One copy in git: bayesdsm/_demo/demo_survey.parquet is a relative link to data/.
    link = ROOT / "bayesdsm" / "_demo" / data.DEMO_FILE
    if not link.is_symlink():
        pytest.skip("not a checkout with symlinks")
    assert os.readlink(link) == "../../data/demo_survey.parquet"
    packaged = resources.files("bayesdsm._demo") / data.DEMO_FILE
    assert packaged.is_file()
    assert Path(str(packaged)).resolve() == REPO_FILE.resolve()


def test_demo_path_finds_the_parquet(monkeypatch):
    monkeypatch.delenv("BAYESDSM_DATA_DIR", raising=False)
    path = data.demo_path()
    assert path.read_bytes()[:4] == b"PAR1"
    assert path == REPO_FILE.resolve()


def test_env_folder_comes_first(tmp_path, monkeypatch):
    copy = tmp_path / data.DEMO_FILE
    copy.write_bytes(b"PAR1" + b"\0" * 8)
    monkeypatch.setenv("BAYESDSM_DATA_DIR", str(tmp_path))
    assert data.demo_path() == copy.resolve()


def test_text_stub_is_skipped(tmp_path, monkeypatch):
    # A symlink checked out as a text file (git without symlink support) is not the survey.
    stub = tmp_path / data.DEMO_FILE
    stub.write_text("../../data/demo_survey.parquet")
    monkeypatch.setenv("BAYESDSM_DATA_DIR", str(tmp_path))
    assert data.demo_path() != stub.resolve()


def test_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESDSM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_package_file", lambda: None)
    monkeypatch.setattr(data, "__file__", str(tmp_path / "bayesdsm" / "data.py"))
    with pytest.raises(BayesDSMError, match="package data bayesdsm._demo"):
        data.demo_path()
