"""The top-level API: every name of ``bayesdsm.__all__`` resolves, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import bayesdsm


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_every_public_name_resolves_in_a_fresh_interpreter():
    code = "import bayesdsm as b\nfor n in b.__all__:\n    getattr(b, n)\nb.evaluate; b.green2020"
    res = _fresh(code)
    assert res.returncode == 0, res.stderr


def test_import_is_lazy():
    res = _fresh(
        "import sys, bayesdsm\nprint('jax' in sys.modules, 'bayesdsm.train' in sys.modules)"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_api_names_are_the_submodules_objects():
    from bayesdsm.catalog import read_catalog
    from bayesdsm.cuts import prepare

    assert bayesdsm.read_catalog is read_catalog
    assert bayesdsm.prepare is prepare
    assert {"TrainConfig", "InferConfig", "load_model", "simulate_survey"} <= set(bayesdsm.__all__)
    assert callable(bayesdsm.train.train)  # `train` is the subpackage; its driver is train.train


def test_unknown_name_is_an_attribute_error():
    try:
        bayesdsm.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("bayesdsm.no_such_name did not raise")
