"""The drivers: catalogs in memory and on disk (resumable), bad input, one star with
NumPyro, the command line."""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm import infer
from bayesdsm.infer import InferConfig

from ._helpers import FAST, make_catalog


def test_infer_catalog_bad_input_and_order(setup, tmp_path):
    emu, dens = setup
    cfg = InferConfig(theta_prior="flat", method="laplace", **FAST)
    post = infer.build_posterior(emu, cfg)
    rng = np.random.default_rng(3)
    cat, theta, nb = make_catalog(post, 8, rng)
    mag = cat.mag.copy()
    mag[1, 3] = np.inf  # non-finite magnitude
    mag[2, 1:] = np.nan  # one band only: prior-dominated
    plx = cat.parallax.copy()
    plx[3] = -0.5  # a negative parallax is data
    obs = cat.observed.copy()
    obs[2, 1:] = False
    cat = cat.replace(mag=mag, parallax=plx, observed=obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = infer.infer_catalog(emu, cat, cfg)
    assert list(tab["source_id"]) == list(cat.source_id)
    assert "nonfinite_input" in tab["flags"][1]
    assert "prior_dominated" in tab["flags"][2]
    cols = [f"{p}_{q}" for p in infer.PARAMS for q in ("p16", "p50", "p84")]
    assert all(np.all(np.isfinite(tab[c])) for c in cols)
    ok = [0, 4, 5, 6, 7]
    assert np.median(np.abs(tab["teff_p50"][ok] - theta[ok, 0])) < 300


def test_empty_catalog_gives_an_empty_table(setup, tmp_path):
    """Zero stars (e.g. an empty partition or a cut that removed every star) give a table
    with every column and no rows, in memory and on disk, instead of an error."""
    from astropy.table import Table

    emu, _ = setup
    cfg = InferConfig(theta_prior="flat", method="laplace", **FAST)
    post = infer.build_posterior(emu, cfg)
    cat, _, _ = make_catalog(post, 2, np.random.default_rng(8))
    full = infer.infer_catalog(emu, cat, cfg)
    empty = cat.subset(np.zeros(0, int))
    tab = infer.infer_catalog(emu, empty, cfg)
    assert len(tab) == 0 and tab.colnames == full.colnames
    out = tmp_path / "empty.parquet"
    infer.run_inference(emu, empty, out, cfg, log=lambda m: None)
    back = Table.read(out)
    assert len(back) == 0 and back.colnames == full.colnames


def test_partition_invariance_and_resume(setup, tmp_path):
    emu, _ = setup
    cfg = InferConfig(theta_prior="flat", method="laplace", **FAST)
    post = infer.build_posterior(emu, cfg)
    cat, _, _ = make_catalog(post, 8, np.random.default_rng(4))
    stars, flags = infer.star_arrays(cat, cfg)
    ids = np.asarray(cat.source_id)
    whole = infer.infer_arrays(post, stars, ids, cfg, flags)
    half = infer.infer_arrays(post, stars.take(np.arange(4, 8)), ids[4:], cfg, flags[4:])
    np.testing.assert_allclose(whole["teff_p50"][4:], half["teff_p50"], rtol=1e-5)
    out = tmp_path / "res.parquet"
    t1 = infer.run_inference(emu, cat, out, cfg, log=lambda m: None)
    (tmp_path / "res.parquet.parts" / "chunk_00001.parquet").unlink()
    msgs = []
    t2 = infer.run_inference(emu, cat, out, cfg, log=msgs.append)
    assert msgs == ["chunk 2/2: 4 stars"]  # only the lost chunk was redone
    np.testing.assert_allclose(t1["teff_p50"], t2["teff_p50"])


@pytest.mark.slow
def test_nuts_one_star_numpyro(setup):
    emu, dens = setup
    cfg = InferConfig()
    post = infer.build_posterior(emu, cfg, theta_density=dens)
    rng = np.random.default_rng(5)
    s = infer.simulate_stars(post, [[5000.0, 3.0, -0.2]], [9.0], [0.2], rng)
    star = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[0], s)
    z0 = post.z_from(jnp.asarray([5000.0, 3.0, -0.2]), 9.0, 0.2)
    mcmc = infer.nuts_one_star(post, star, num_warmup=150, num_samples=150, init_z=z0)
    teff = np.asarray(mcmc.get_samples()["teff"])
    assert abs(np.median(teff) - 5000) < 250


def test_cli_infer_summary_counts_flags():
    """The final summary of ``bayesdsm infer`` counts every flag by name (not by
    substring: ``map_not_converged`` is not ``not_converged``) and every method."""
    from astropy.table import Table

    from bayesdsm.cli import infer_summary

    t = Table(
        {
            "flags": ["", "not_converged", "map_not_converged,multimodal", "chi2,not_converged"],
            "converged": [True, False, False, False],
            "method": ["psis", "nuts", "hmc", "nuts"],
        }
    )
    s = infer_summary(t)
    assert s["n_stars"] == 4 and s["converged"] == 1
    assert s["not_converged"] == 2 and s["multimodal"] == 1
    assert s["flags"]["map_not_converged"] == 1 and s["flags"]["chi2"] == 1
    assert set(s["flags"]) == set(infer.FLAGS)
    assert s["methods"] == {"hmc": 1, "nuts": 2, "psis": 1}


@pytest.mark.slow
def test_cli_infer_smoke(green2020_dir, tmp_path, capsys):
    from bayesdsm.catalog import write_catalog
    from bayesdsm.cli import main
    from bayesdsm.green2020 import load_green2020_emulator

    model = tmp_path / "g20.model"
    assert main(["import-green2020", str(green2020_dir), "--out", str(model)]) == 0
    emu = load_green2020_emulator(green2020_dir, jnp.float32)
    post = infer.build_posterior(emu, InferConfig(theta_prior="flat"))
    cat, _, _ = make_catalog(post, 4, np.random.default_rng(6))
    path = write_catalog(cat, tmp_path / "cat.parquet")
    out = tmp_path / "post.parquet"
    args = [
        "infer",
        str(model),
        str(path),
        "--out",
        str(out),
        "--method",
        "laplace",
        "--chunk",
        "4",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    from astropy.table import Table

    t = Table.read(out)
    assert len(t) == 4 and "teff_p50" in t.colnames and "flags" in t.colnames
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_stars"] == 4 and "not_converged" in summary and "flags" in summary
