"""Clean errors in every command (issue 18): one line naming the file and what to do,
exit status 2 for bad input and 1 for internal errors, a traceback only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from astropy.table import Table

import bayesdsm.evaluate
from bayesdsm.catalog import write_catalog

from ._malformed import make_case, simulated_rows, write_green2020


@pytest.fixture
def good_catalog(tmp_path):
    return write_green2020(simulated_rows(8), tmp_path / "good.h5")


def one_error_line(res, *words):
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert lines[-1].startswith("error: ") and all(w in lines[-1] for w in words), lines[-1]
    return lines[-1]


def evaluate(run_cli, model, catalog, out, *extra):
    return run_cli("evaluate", model, catalog, "--out", out, *extra)


def test_missing_catalog_file(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "nope.h5"
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv")
    one_error_line(res, "no such catalog file", str(path), "check the path")


def test_a_directory_as_catalog(tiny_model_path, tmp_path, run_cli):
    res = evaluate(run_cli, tiny_model_path, tmp_path, tmp_path / "e.csv", "--preset", "green2020")
    one_error_line(res, str(tmp_path), "is a directory")


def test_unreadable_catalog(tiny_model_path, good_catalog, tmp_path, run_cli, monkeypatch):
    good_catalog.chmod(0)
    if os.geteuid() == 0:  # root reads anything: pretend the file is not readable
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and p != good_catalog)
    res = evaluate(
        run_cli, tiny_model_path, good_catalog, tmp_path / "e.csv", "--preset", "green2020"
    )
    one_error_line(res, str(good_catalog), "permission denied")


def test_permission_error_from_the_reader(tiny_model_path, tmp_path, run_cli, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setattr(Table, "read", denied)
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv")
    one_error_line(res, str(path), "permission denied")


def test_unknown_catalog_format(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "cat.txt"
    path.write_text("a b c\n")
    one_error_line(evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv"), "format")


@pytest.mark.parametrize(
    ("suffix", "content", "word"),
    [
        (".h5", b"not hdf5 at all", "not an HDF5 file"),
        (".parquet", b"PAR1 garbage", "cannot be read as PARQUET"),
        (".fits", b"SIMPLE  =  garbage", "cannot be read as FITS"),
        (".ecsv", b"# %ECSV 1.0\n# ---\n# garbage: [\nx\n1\n", "cannot be read as ECSV"),
        (".csv", b"", "no photometry"),
    ],
)
def test_damaged_or_mislabelled_files(suffix, content, word, tiny_model_path, tmp_path, run_cli):
    path = tmp_path / f"cat{suffix}"
    path.write_bytes(content)
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv")
    one_error_line(res, str(path), word)


def test_truncated_hdf5(tiny_model_path, good_catalog, tmp_path, run_cli):
    data = good_catalog.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: len(data) // 2])
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv", "--preset", "green2020")
    one_error_line(res, str(path))


def test_wrong_hdf5_layouts(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(5)  # an array, not a table
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv", "--preset", "green2020")
    one_error_line(res, str(path), "is not a table")
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv")  # canonical: /catalog
    one_error_line(res, str(path), "preset")


def test_model_file_errors(good_catalog, tmp_path, run_cli):
    for model in (tmp_path / "none.bdsm", tmp_path):
        res = evaluate(run_cli, model, good_catalog, tmp_path / "e.csv", "--preset", "green2020")
        one_error_line(res, str(model), "model file")
    truncated = tmp_path / "t.bdsm"
    truncated.write_bytes(b"BDSMODEL\x00\x00")
    res = evaluate(run_cli, truncated, good_catalog, tmp_path / "e.csv", "--preset", "green2020")
    one_error_line(res, str(truncated))


def test_output_errors(tiny_model_path, good_catalog, tmp_path, run_cli):
    res = evaluate(
        run_cli, tiny_model_path, good_catalog, tmp_path / "e.txt", "--preset", "green2020"
    )
    one_error_line(res, "e.txt", "table format")
    out = good_catalog / "e.csv"  # a file where a folder should be
    res = evaluate(run_cli, tiny_model_path, good_catalog, out, "--preset", "green2020")
    one_error_line(res, str(good_catalog), "check the path")
    res = run_cli(
        "infer", tiny_model_path, good_catalog, "--out", tmp_path / "p.h5", "--preset", "green2020"
    )
    one_error_line(res, "p.h5", ".parquet")


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "{bad}", "--out", "{tmp}/m.bdsm", "--quiet"],
        ["report", "{model}", "{bad}", "--out", "{tmp}/rep", "--no-progress"],
        ["epistemic", "{model}", "{bad}", "--out", "{tmp}/e.bdsm", "--quiet"],
        ["infer", "{model}", "{bad}", "--out", "{tmp}/p.parquet"],
        ["import-green2020", "{tmp}", "--out", "{tmp}/g.bdsm"],
    ],
)
def test_every_command_gives_one_clean_line(argv, tiny_model_path, tmp_path, run_cli):
    bad, _, _ = make_case("not_hdf5", simulated_rows(4), tmp_path)
    fill = {"bad": bad, "tmp": tmp_path, "model": tiny_model_path}
    res = run_cli(
        *(a.format(**fill) for a in argv), *(["--preset", "green2020"] if "{bad}" in argv else [])
    )
    one_error_line(res, str(tmp_path))


def test_internal_error_is_one_line_and_debug_shows_the_traceback(
    tiny_model_path, good_catalog, tmp_path, run_cli, monkeypatch
):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(bayesdsm.evaluate, "evaluate_rows", boom)
    args = (tiny_model_path, good_catalog, tmp_path / "e.csv", "--preset", "green2020")
    res = evaluate(run_cli, *args)
    assert res.code == 1
    assert res.err.strip().splitlines()[-1] == (
        "internal error: RuntimeError: boom (rerun with --debug for the traceback)"
    )
    for debug in (["--debug", "evaluate"], ["evaluate", "--debug"]):  # before or after
        res = run_cli(*debug, *args[:2], "--out", args[2], *args[3:])
        assert res.code == 1 and "Traceback" in res.err and "RuntimeError: boom" in res.err


def test_debug_shows_the_traceback_of_bad_input(tiny_model_path, tmp_path, run_cli):
    bad, _, _ = make_case("not_hdf5", simulated_rows(4), tmp_path)
    res = run_cli(
        "--debug",
        "evaluate",
        tiny_model_path,
        bad,
        "--out",
        tmp_path / "e.csv",
        "--preset",
        "green2020",
    )
    assert res.code == 2 and "Traceback" in res.err and "file signature not found" in res.err
    assert res.err.strip().splitlines()[-1].startswith("error: ")


def test_subprocess_exit_status_and_one_line_messages(tiny_model_path, tmp_path):
    """The installed entry point: no traceback on stderr, warnings as one line each."""
    bad, _, _ = make_case("not_hdf5", simulated_rows(4), tmp_path)
    cmd = [sys.executable, "-m", "bayesdsm.cli", "evaluate", str(tiny_model_path)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    res = subprocess.run(
        [*cmd, str(bad), "--preset", "green2020", "--out", str(tmp_path / "e.csv")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [res.stderr.strip()] and "Traceback" not in res.stderr
    path, n, _ = make_case("bad_parallaxes", simulated_rows(20), tmp_path)
    out = tmp_path / "e.ecsv"
    res = subprocess.run(
        [*cmd, str(path), "--preset", "green2020", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "warnings.warn" not in res.stderr
    assert any(line.startswith("warning: catalog: masked") for line in res.stderr.splitlines())
    assert len(Table.read(out)) == n


def test_catalog_without_rows_in_canonical_format(tiny_model_path, tmp_path, run_cli):
    from bayesdsm.catalog import read_catalog

    path = write_catalog(
        read_catalog(write_green2020(simulated_rows(3)[:0], tmp_path / "e.h5"), preset="green2020"),
        tmp_path / "empty.parquet",
    )
    res = evaluate(run_cli, tiny_model_path, path, tmp_path / "e.csv")
    one_error_line(res, str(path), "no rows")
