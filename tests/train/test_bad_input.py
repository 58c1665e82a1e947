"""Bad input to training: a catalog from which R's scale cannot be learned (issue 19)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bayesdsm.catalog import catalog_from_table, catalog_to_table
from bayesdsm.errors import BayesDSMError, TrainingError
from bayesdsm.train import train

from ._toy import TINY, toy_catalog


@pytest.fixture(scope="module")
def small():
    return toy_catalog(40, seed=5)


def _no_prior_columns(cat):
    """The catalog as read from a table without the columns ``ebv`` and ``ebv_err``."""
    t = catalog_to_table(cat)
    t.remove_columns(["ebv", "ebv_err"])
    return catalog_from_table(t)


def _sigma(values):
    return lambda c: c.replace(ebv_err=np.resize(np.asarray(values, float), len(c)))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_no_prior_columns, "no star has one"),
        (_sigma([1.0]), "every σ_E is ≥ 1 mag (smallest 1 mag)"),
        (_sigma([3.0, 1.5, 1.2]), "every σ_E is ≥ 1 mag (smallest 1.2 mag)"),
        (_sigma([np.nan, 2.0]), "every σ_E is ≥ 1 mag (smallest 2 mag)"),
    ],
    ids=["no_columns", "all_1", "all_above_1", "nan_or_above_1"],
)
def test_no_usable_reddening_prior(small, make, what):
    with pytest.raises(TrainingError, match="R's scale cannot be learned") as info:
        train(make(small), TINY)
    msg = str(info.value)
    assert isinstance(info.value, BayesDSMError)
    assert what in msg
    assert "columns 'ebv' and 'ebv_err'" in msg


def test_names_the_preset_columns(small):
    bad = small.replace(ebv_err=np.full(len(small), 2.0), meta={"preset": "green2020"})
    with pytest.raises(TrainingError, match=re.escape("'r' and 'r_err' (preset 'green2020'")):
        train(bad, TINY)


def test_errors_below_1_mag_pass_this_check(small):
    """σ_E of 0.5-0.9 mag is a usable prior: training stops on iteration 0's rule
    max_ebv_err_first instead."""
    with pytest.raises(TrainingError, match="max_ebv_err_first") as info:
        train(_sigma([0.5, 0.9])(small), TINY)
    assert "R's scale" not in str(info.value)
