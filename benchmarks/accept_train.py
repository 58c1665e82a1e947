"""Acceptance numbers of a trained model against a simulated survey's truth (issue 4).

Reads a simulated catalog (``--catalog``, e.g. from ``python -m bayesdsm.simulate``) or
simulates one (truth: real stellar models, or ``--emulator-truth`` for a random
emulator), runs the §3 cuts and the §4 training, and prints one JSON line. Everything is
measured on the TEST split (held-out stars, at their true θ):

* ``colour_rms``: per colour X-G, RMS of learned - true zero-extinction colour where the
  validity density (band X) is ≥ 1e-2 (target ≤ 0.01);
* ``MG_rms_dwarfs``: RMS of M_G for dwarfs, true log g ≥ 3.8 (target ≤ 0.03);
* ``MG_rms_giants`` beside ``MG_scatter_truth_giants``, the truth's own scatter of M_G at
  fixed θ (masses and ages differ): the RMS of true M_G about a local linear fit of
  true M_G on true θ over the k nearest catalogue neighbours in θ / std(θ), predicted
  without the star itself and corrected for the fit's own error (target: within 20%);
* ``R_rel_err``: learned R at the catalogue-mean θ̂ (``metrics(theta_at="median")``: the
  median) over the truth's A/E in the low-extinction limit (``true_R_<band>``; divided by
  ``prior_scale`` for a prior biased by that factor) of the stars near that θ (≤ 3%);
* ``chi2_dof_test``: mean χ²/dof (dof = components - 1; 0.9-1.1), also ≤ 5 only;
* ``score_pct``: 16/50/84th percentiles of the colour scores (-1/0/+1 ± 0.15);
* ``median_dE``: median of re-estimated E - true E (≤ 0.01).

    python -m bayesdsm.simulate --n-stars 200000 --seed 7 --out /tmp/sim200k.parquet
    python benchmarks/accept_train.py --catalog /tmp/sim200k.parquet   # paper schedule
    python benchmarks/accept_train.py --n 20000 --iterations 5 --epochs 10 --emulator-truth
    python benchmarks/accept_train.py --catalog C --evaluate /tmp/run   # re-score a saved run
    python benchmarks/accept_train.py --catalog C --oracle --set 'hidden=[32,32]'
    python benchmarks/accept_train.py --catalog C --oracle --oracle-weights likelihood
    python benchmarks/accept_train.py --catalog C --true-theta   # θ̂ = true θ (diagnostic)

``--oracle`` is the capacity oracle: no survey fit, but the stellar network fitted by
least squares to the truth itself (true θ → true M_G and zero-extinction colours, equal
weights, no penalty) on the training split, with the §4 schedule of the TrainConfig
(batch, 20 × 25 epochs, learning_rate · e^(-k/lr_decay)); it prints the same colour and
M_G metrics. It says what the architecture can represent, and whether the schedule
converges, with no noise, reddening or distances in the way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

THETA_COLS = ("teff", "logg", "feh")


def true_theta(cat) -> np.ndarray:
    """The simulated catalog's true θ (N, 3)."""
    return np.stack([np.asarray(cat.extra[f"true_{c}"], np.float64) for c in THETA_COLS], 1)


def for_training(cat, exact_theta: bool = False):
    """The §3 cuts, then the rows ``train()`` keeps (θ̂ and the reference band), so that
    row indices match a run's saved split. ``exact_theta`` (diagnostic): every θ̂ is the
    true θ, as if each survey had measured it exactly on its own scale (the §3 zero points
    undone, so the cuts bring it back to the truth), with σ 1 K, 0.01, 0.01 dex before the
    cuts add their error floors in quadrature."""
    from bayesdsm.config import CutsConfig
    from bayesdsm.cuts import apply_zero_points, prepare

    if exact_theta:
        has = cat.has_theta
        cov = np.broadcast_to(np.diag([1.0, 1e-4, 1e-4]), (len(cat), 3, 3))
        cat = cat.replace(theta=np.where(has[:, None], true_theta(cat), np.nan),
                          theta_cov=np.where(has[:, None, None], cov, np.nan))  # fmt: skip
        offsets = CutsConfig().zero_point_offsets() or {}
        cat, _ = apply_zero_points(cat, {s: tuple(-x for x in off) for s, off in offsets.items()})
    cat, _ = prepare(cat)
    return cat.subset(np.flatnonzero(cat.has_theta & np.asarray(cat.observed[:, 0], bool)))


def predict_zero_extinction(emu, theta) -> np.ndarray:
    """(M_G, X − G) (N, n_bands) of the emulator at θ (N, 3) with no extinction."""
    from bayesdsm.emulator import batched, predict_colours

    zero = jnp.zeros(len(theta), jnp.float32)
    out = batched(predict_colours)(emu, jnp.asarray(theta, jnp.float32), zero)
    return np.asarray(out, np.float64)


def truth_scatter(th_all, y_all, th_query, k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Local linear fit of y on θ / std(θ) over the k nearest neighbours (self excluded).

    Returns (fit at each query θ, leverage h). A residual y - fit has variance
    σ²(1 + h): the intrinsic scatter plus the fit's own error, which the caller divides
    out.
    """
    from scipy.spatial import cKDTree

    scale = th_all.std(0)
    tree = cKDTree(th_all / scale)
    _, nb = tree.query(th_query / scale, k=k + 1)
    nb = nb[:, 1:]  # the query star itself (a catalogue member) is the nearest
    X = th_all[nb] / scale - (th_query / scale)[:, None, :]  # (n, k, 3), centred on query
    X = np.concatenate([np.ones(X.shape[:2] + (1,)), X], axis=2)
    XtX = np.einsum("nki,nkj->nij", X, X)
    Xty = np.einsum("nki,nk->ni", X, y_all[nb])
    beta = np.linalg.solve(XtX, Xty[..., None])[..., 0]
    h = np.linalg.inv(XtX)[:, 0, 0]  # leverage at the query point (x = 0)
    return beta[:, 0], h


def truth_metrics(cat, emu, validity, split) -> dict:
    """The colour and M_G items of :func:`metrics` (test split, true θ, E = 0)."""
    th_all = true_theta(cat)
    M_all = np.stack([np.asarray(cat.extra[f"true_M_{b}"], np.float64) for b in cat.bands], 1)
    return truth_metrics_at(emu, validity, cat.bands, th_all, M_all, np.flatnonzero(split == 2))


def truth_metrics_at(emu, validity, bands, th_all, M_all, rows) -> dict:
    """Colour and M_G metrics of ``emu`` against a noise-free truth, at true θ and E = 0.

    Args:
        emu: the trained emulator; validity: its validity grid.
        bands: the band names, reference first.
        th_all: (N, 3) true θ of every truth star (the truth-scatter fit's neighbours).
        M_all: (N, B) their true absolute magnitudes.
        rows: the stars scored (e.g. the test split, or every star of a truth grid).
    """
    from bayesdsm.validity import validity_at

    th = th_all[rows]
    true_M = M_all[rows]
    pred = predict_zero_extinction(emu, th)
    true_c = np.concatenate([true_M[:, :1], true_M[:, 1:] - true_M[:, :1]], 1)
    out = {"n_test": int(len(rows))}
    rms, bias, nval = {}, {}, {}
    for k, b in enumerate(bands[1:], start=1):
        v = np.asarray(validity_at(validity, jnp.asarray(th, jnp.float32), b))
        ok = (v >= 1e-2) & np.isfinite(true_c[:, k])
        d = pred[ok, k] - true_c[ok, k]
        rms[f"{b}-{bands[0]}"] = float(np.sqrt(np.mean(d**2)))
        bias[f"{b}-{bands[0]}"] = float(np.mean(d))
        nval[f"{b}-{bands[0]}"] = int(ok.sum())
    out["colour_rms"], out["colour_bias"], out["colour_n"] = rms, bias, nval
    vg = np.asarray(validity_at(validity, jnp.asarray(th, jnp.float32), "parallax"))
    dwarf = (th[:, 1] >= 3.8) & (vg >= 1e-2)
    giant = (th[:, 1] < 3.8) & (vg >= 1e-2)
    d = pred[:, 0] - true_c[:, 0]
    out["MG_rms_dwarfs"] = float(np.sqrt(np.mean(d[dwarf] ** 2)))
    out["MG_bias_dwarfs"] = float(np.mean(d[dwarf]))
    out["MG_rms_giants"] = float(np.sqrt(np.mean(d[giant] ** 2)))
    out["MG_bias_giants"] = float(np.mean(d[giant]))
    out["n_dwarfs"], out["n_giants"] = int(dwarf.sum()), int(giant.sum())
    # the truth's own scatter of M_G at fixed θ (k-NN local linear fit in θ / std θ)
    fit, h = truth_scatter(th_all, M_all[:, 0], th)
    res = true_M[:, 0] - fit
    for name, sel in (("giants", giant), ("dwarfs", dwarf)):
        out[f"MG_scatter_truth_{name}"] = float(np.sqrt(np.mean(res[sel] ** 2 / (1 + h[sel]))))
    out["MG_rms_giants_over_truth_scatter"] = out["MG_rms_giants"] / out["MG_scatter_truth_giants"]
    return out


def metrics(cat, emu, validity, split, ebv, ebv_err, *, theta_at="mean", prior_scale=1.0) -> dict:
    """Every acceptance metric (module docstring) on the test split.

    ``theta_at`` (``"mean"`` or ``"median"``): where R is compared, the catalogue's mean
    or median θ̂. ``prior_scale``: the catalogue's reddening prior is ``prior_scale`` × the
    true E (e.g. 1.14 for an SFD-like prior), so the truth's R on the prior's scale is
    R_true / prior_scale and ΔE is measured against prior_scale × true E.
    """
    from bayesdsm.likelihood import chi2, colour_scores, dof, stardata_from_catalog

    bands = cat.bands
    test = np.flatnonzero(split == 2)
    th_all = true_theta(cat)
    out = truth_metrics(cat, emu, validity, split)
    # R at the catalogue-mean (median) θ̂ against the truth's low-extinction A/E near it
    th_hat = np.asarray(cat.theta, np.float64)
    tmean = th_hat.mean(0) if theta_at == "mean" else np.median(th_hat, 0)
    R = np.asarray(emu(jnp.asarray(tmean, jnp.float32))[1], np.float64)
    near = np.all(np.abs(th_all - tmean) < np.array([150.0, 0.3, 0.2]), 1)
    R_true = np.median(np.stack([cat.extra[f"true_R_{b}"] for b in bands], 1)[near], 0)
    R_true = R_true / prior_scale
    out["theta_at"], out["prior_scale"] = theta_at, prior_scale
    out["theta_mean"] = tmean.tolist()
    out["n_near_mean"] = int(near.sum())
    out["R_learned"] = {b: float(R[k]) for k, b in enumerate(bands)}
    q = np.asarray(emu.extinction.curvature, np.float64)
    out["curvature_learned"] = {b: float(q[k]) for k, b in enumerate(bands)}
    out["R_true"] = {b: float(R_true[k]) for k, b in enumerate(bands)}
    out["R_rel_err"] = {b: float(R[k] / R_true[k] - 1) for k, b in enumerate(bands)}
    stars = stardata_from_catalog(cat, np.float32, ebv=ebv, ebv_err=ebv_err)
    st = jax.tree_util.tree_map(lambda a: jnp.asarray(a[test]), stars)
    c2 = np.asarray(jax.jit(jax.vmap(chi2, (None, 0)))(emu, st))
    df = np.asarray(jax.vmap(dof)(st))
    ok = df > 0
    r = c2[ok] / df[ok]
    out["chi2_dof_test"] = float(np.mean(r))
    out["chi2_dof_test_median"] = float(np.median(r))
    out["chi2_dof_test_le5"] = float(np.mean(r[r <= 5]))
    out["frac_chi2_dof_gt5"] = float(np.mean(r > 5))
    # Eq. 18 at the best-fit Ê from the catalogue prior (Fig. 12's recipe), scored with
    # the residual covariance after that fit (likelihood.colour_scores, fit_reddening)
    prior = stardata_from_catalog(cat, np.float32)
    st_prior = jax.tree_util.tree_map(lambda a: jnp.asarray(a[test]), prior)
    scores = jax.vmap(lambda s: colour_scores(emu, s, fit_reddening=True))
    sc = np.asarray(jax.jit(scores)(st_prior))
    sc_cm = np.asarray(jax.jit(jax.vmap(colour_scores, (None, 0)))(emu, st))
    out["score_pct_cm_at_trained_E"] = [float(x) for x in np.nanpercentile(sc_cm, [16, 50, 84])]
    out["score_pct"] = [float(x) for x in np.nanpercentile(sc, [16, 50, 84])]
    out["score_pct_per_colour"] = {
        f"{b}-{bands[0]}": [
            round(float(x), 3) for x in np.nanpercentile(sc[:, k - 1], [16, 50, 84])
        ]
        for k, b in enumerate(bands[1:], start=1)
        if np.isfinite(sc[:, k - 1]).any()
    }
    dE = ebv[test] - prior_scale * np.asarray(cat.extra["true_ebv"], np.float64)[test]
    out["median_dE"] = float(np.median(dE))
    out["dE_pct_16_84"] = [float(x) for x in np.percentile(dE, [16, 84])]
    if emu.n_components == 2:
        out.update(variation_metrics(cat, emu, test, tmean, near, R_true))
    return out


def variation_metrics(cat, emu, test, tmean, near, R_true) -> dict:
    """Issue 20's numbers of a K = 2 model on the test split.

    * ``sigma_RV_implied_F99``: the length of R₁'s part orthogonal to R₀ over that of the
      passband × blackbody × F99 ∂A/∂R(V) (orthogonalised the same way): the spread of
      R(V) that R₁ stands for (0 on a survey without R(V) variation);
    * ``R1_*``: the learned R₁ and its part orthogonal to the learned R₀ at ``tmean``;
      with the truth's ∂A/∂R(V) (``true_dR_dRV_<band>``, per unit E at E → 0; median
      of the stars ``near`` tmean) times the survey's σ(R(V)), orthogonalised against the
      truth's R (``R_true``): the angle between the two orthogonal parts and the ratio of
      their lengths (learned / truth);
    * ``xi_*``: each test star's ξ̂ (:func:`bayesdsm.likelihood.extinction_posterior`
      from the catalogue's prior, at θ̂): its mean and standard deviation, and its
      Pearson r with the true R(V) for true E ≥ 0.5 and in bins of true E.
    """
    from bayesdsm.likelihood import extinction_posterior, stardata_from_catalog
    from bayesdsm.report_variation import SIGMA_RV, r1_geometry
    from bayesdsm.variation import angle_deg, orthogonal_part

    bands = cat.bands
    geo = r1_geometry(emu, tmean)
    R1, perp = geo["R1"], geo["R1_perp"]
    out = {"R1_learned": dict(zip(bands, R1.tolist())),
           "R1_perp_learned": dict(zip(bands, perp.tolist()))}  # fmt: skip
    st = jax.tree_util.tree_map(lambda a: jnp.asarray(a[test]), stardata_from_catalog(cat))
    post = jax.jit(jax.vmap(extinction_posterior, (None, 0, 0, 0)))
    _, xi, _ = post(emu, st, st.ebv, st.ebv_err)
    xi = np.asarray(xi, np.float64)
    out["xi_mean_test"], out["xi_std_test"] = float(np.mean(xi)), float(np.std(xi))
    # R₁'s orthogonal length in units of F99's per unit R(V): the σ(R(V)) it implies
    out["sigma_RV_implied_F99"] = float(geo["length_ratio"] * SIGMA_RV)
    if f"true_dR_dRV_{bands[0]}" not in cat.extra:
        return out
    rv = np.asarray(cat.extra["true_RV"], np.float64)
    d = np.stack([cat.extra[f"true_dR_dRV_{b}"] for b in bands], 1)
    truth = orthogonal_part(np.median(d[near], 0) * np.std(rv), R_true)
    out["R1_perp_true"] = dict(zip(bands, truth.tolist()))
    out["R1_angle_deg"] = angle_deg(perp, truth)
    out["R1_amp_ratio"] = float(np.linalg.norm(perp) / np.linalg.norm(truth))
    out["sigma_RV_true"] = float(np.std(rv))
    e_true, rv_t = np.asarray(cat.extra["true_ebv"], np.float64)[test], rv[test]
    big = e_true >= 0.5
    out["xi_RV_pearson_E_ge_0.5"] = float(np.corrcoef(xi[big], rv_t[big])[0, 1])
    out["n_E_ge_0.5"] = int(big.sum())
    edges = (0.0, 0.1, 0.25, 0.5, 1.0, np.inf)
    out["xi_RV_pearson_by_E"] = {
        f"{lo:g}-{hi:g}": [float(np.corrcoef(xi[m], rv_t[m])[0, 1]), int(m.sum())]
        for lo, hi in zip(edges[:-1], edges[1:])
        if (m := (e_true >= lo) & (e_true < hi)).sum() > 10
    }
    return out


def oracle_weights(cat, tr, ok, kind: str):
    """Per-target weights (n, 1 + colours) of the oracle on rows ``tr``: ``equal`` (1 where
    finite), ``likelihood`` (M_G by 1/σ_μ², σ_μ at the true distance, 0 without a
    parallax; X − G by 1/(σ_X² + σ_G²), 0 where unobserved) or ``mg_only`` (M_G as
    ``likelihood``, colours equal); normalised to mean 1 over the finite targets."""
    if kind == "equal":
        return ok.astype(float)
    err = np.asarray(cat.mag_err, np.float64)[tr]
    obs = np.asarray(cat.observed, bool)[tr]
    wc = np.where(obs[:, 1:] & obs[:, :1], 1.0 / (err[:, 1:] ** 2 + err[:, :1] ** 2), 0.0)
    plx_true = 10 ** ((10 - np.asarray(cat.extra["true_mu"], np.float64)[tr]) / 5)
    s_mu = 5 / np.log(10) * np.asarray(cat.parallax_err, np.float64)[tr] / plx_true
    has_plx = np.isfinite(s_mu) & np.isfinite(np.asarray(cat.parallax, np.float64)[tr])
    wm = np.where(has_plx, 1 / np.where(has_plx, s_mu, 1.0) ** 2, 0.0)
    if kind == "mg_only":
        w = np.concatenate([wm[:, None] / np.mean(wm[wm > 0]), np.ones_like(wc)], 1)
    else:
        w = np.concatenate([wm[:, None], wc], 1)
    w = np.where(np.isfinite(w) & ok, w, 0.0)
    return w / np.mean(w[ok])


def oracle(cat, tc, weights: str = "equal") -> dict:
    """Capacity oracle (``--oracle``): the stellar network of ``tc`` fitted by least
    squares to the truth on the training split with ``tc``'s schedule, each target
    weighted as :func:`oracle_weights` ``weights`` says; its metrics."""
    import equinox as eqx
    import optax

    from bayesdsm.emulator import EmulatorConfig, init_emulator
    from bayesdsm.train import learning_rate, split_indices
    from bayesdsm.validity import compute_validity

    tr, val, te = split_indices(len(cat), tc)
    split = np.zeros(len(cat), np.int8)
    split[val], split[te] = 1, 2
    th = true_theta(cat)
    M = np.stack([np.asarray(cat.extra[f"true_M_{b}"], np.float64) for b in cat.bands], 1)
    y = np.concatenate([M[:, :1], M[:, 1:] - M[:, :1]], 1)[tr]
    theta_hat = np.asarray(cat.theta, np.float64)[tr]  # the normaliser, as in training
    ecfg = EmulatorConfig(bands=cat.bands, hidden=tc.hidden, activation=tc.activation)
    emu = init_emulator(jax.random.PRNGKey(tc.seed), ecfg, theta_median=np.median(theta_hat, 0),
                        theta_std=np.std(theta_hat, 0))  # fmt: skip
    ok = np.isfinite(y)
    start = jnp.asarray(np.nanmedian(np.where(ok, y, np.nan), 0), jnp.float32)
    net = eqx.tree_at(lambda n: n.layers[-1].bias, emu.stellar, start)
    x = jax.vmap(emu.normalizer)(jnp.asarray(th[tr], jnp.float32))
    w = jnp.asarray(oracle_weights(cat, tr, ok, weights), jnp.float32)
    y = jnp.asarray(np.where(ok, y, 0.0), jnp.float32)
    params, static = eqx.partition(net, eqx.is_array)
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=tc.learning_rate)
    ost = opt.init(params)

    def loss(p, idx):
        r = jax.vmap(eqx.combine(p, static))(x[idx]) - y[idx]
        return jnp.mean(jnp.sum(w[idx] * r**2, 1))

    @jax.jit
    def epoch(p, o, rows):
        def step(c, idx):
            g = jax.grad(loss)(c[0], idx)
            u, o2 = opt.update(g, c[1], c[0])
            return (optax.apply_updates(c[0], u), o2), None

        return jax.lax.scan(step, (p, o), rows)[0]

    n_b = tr.size // tc.batch_size
    for k in range(tc.n_iterations):
        ost.hyperparams["learning_rate"] = jnp.asarray(learning_rate(tc, k), jnp.float32)
        for e in range(tc.epochs):
            perm = np.random.default_rng([tc.seed, k, e]).permutation(tr.size)
            rows = jnp.asarray(perm[: n_b * tc.batch_size].reshape(n_b, tc.batch_size))
            params, ost = epoch(params, ost, rows)
    emu = eqx.tree_at(lambda m: m.stellar, emu, eqx.combine(params, static))
    obs = np.asarray(cat.observed, bool)[tr]
    validity = compute_validity(theta_hat, obs, np.asarray(cat.parallax_ok, bool)[tr], cat.bands)
    return {"final_loss": float(loss(params, jnp.arange(tr.size))),
            **truth_metrics(cat, emu, validity, split)}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", help="a simulated catalog (with true_* columns)")
    ap.add_argument("--n", type=int, default=200_000, help="stars to simulate (no --catalog)")
    ap.add_argument("--subset", type=int, default=None, help="use the first N catalog rows")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--method", default="deconvolved", choices=("paper", "deconvolved"))
    ap.add_argument("--parallax", default=None, choices=("inverted", "linearized"),
                    help="TrainConfig.parallax (default: TrainConfig's)")  # fmt: skip
    ap.add_argument("--curvature", default=None, choices=("on", "off"),
                    help="TrainConfig.extinction_curvature (default: TrainConfig's)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--true-theta", action="store_true",
                    help="diagnostic: θ̂ = the true θ (see for_training)")  # fmt: skip
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="another TrainConfig field, e.g. hidden=[64,64] (repeatable)")  # fmt: skip
    ap.add_argument("--emulator-truth", action="store_true")
    ap.add_argument("--deadline-min", type=float, default=None,
                    help="start no iteration that would end after this many minutes")  # fmt: skip
    ap.add_argument("--save", help="write PREFIX.bdsm (model) and PREFIX.npz (split, E)")
    ap.add_argument("--evaluate", help="score a run saved with --save PREFIX, no training")
    ap.add_argument("--checkpoint", help="training checkpoint (resumed if it exists)")
    ap.add_argument("--oracle", action="store_true",
                    help="fit the stellar network to the truth (capacity oracle)")  # fmt: skip
    ap.add_argument("--oracle-weights", default="equal",
                    choices=("equal", "likelihood", "mg_only"),
                    help="the oracle's target weights (see oracle_weights)")  # fmt: skip
    args = ap.parse_args(argv)
    from bayesdsm.catalog import read_catalog
    from bayesdsm.train import TrainConfig, train

    t0 = time.perf_counter()
    if args.catalog:
        cat = read_catalog(args.catalog)
    else:
        from bayesdsm.simulate import EmulatorTruth, SimConfig, simulate_survey

        truth = None
        cfg = SimConfig(n_stars=args.n)
        if args.emulator_truth:
            from bayesdsm.emulator import init_emulator

            truth = EmulatorTruth(init_emulator(jax.random.PRNGKey(99)))
            cfg = SimConfig(n_stars=args.n, population_source="parametric")
        cat = simulate_survey(cfg, truth)
    if args.subset:
        cat = cat.subset(np.arange(min(args.subset, len(cat))))
    cat = for_training(cat, exact_theta=args.true_theta)
    t1 = time.perf_counter()
    if args.evaluate:
        from bayesdsm.model_file import load_model

        model = load_model(args.evaluate + ".bdsm")
        z = np.load(args.evaluate + ".npz")
        out = {"evaluated": args.evaluate, "n": len(cat), **json.loads(str(z["info"]))}
        out.update(metrics(cat, model.emulator, model.validity_grid, z["split"], z["ebv"],
                           z["ebv_err"]))  # fmt: skip
        print(json.dumps(out), flush=True)
        return 0
    extra = {} if args.parallax is None else {"parallax": args.parallax}
    if args.curvature is not None:
        extra["extinction_curvature"] = args.curvature == "on"
    for item in args.set:
        key, _, value = item.partition("=")
        extra[key] = json.loads(value)
    tc = TrainConfig(method=args.method, n_iterations=args.iterations, epochs=args.epochs,
                     seed=args.seed, **extra)  # fmt: skip
    if args.oracle:
        t2 = time.perf_counter()
        out = {"oracle": True, "n": len(cat), "set": args.set,
               "weights": args.oracle_weights, **oracle(cat, tc, args.oracle_weights)}  # fmt: skip
        print(json.dumps({**out, "oracle_s": time.perf_counter() - t2}), flush=True)
        return 0
    deadline = None if args.deadline_min is None else time.time() + 60 * args.deadline_min
    res = train(cat, tc, progress=True, deadline=deadline, checkpoint=args.checkpoint,
                resume=args.checkpoint is not None)  # fmt: skip
    t2 = time.perf_counter()
    last = res.history[-1]
    info = {"method": args.method, "parallax": tc.parallax,
            "extinction_curvature": tc.extinction_curvature, "set": args.set,
            "iterations_planned": args.iterations,
            "iterations_done": len(res.history), "epochs": args.epochs,
            "final_lr": last["learning_rate"], "sim_s": t1 - t0, "train_s": t2 - t1,
            "final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"],
            "n_excluded_final": int(res.excluded.sum()),
            "trainer_test": last.get("test", {})}  # fmt: skip
    if args.save:
        from bayesdsm.model_file import save_model
        from bayesdsm.train import to_stellar_model

        save_model(to_stellar_model(res), args.save + ".bdsm")
        np.savez(args.save + ".npz", split=res.split, ebv=res.ebv, ebv_err=res.ebv_err,
                 info=np.array(json.dumps(info)))  # fmt: skip
    out = {"n": len(cat), **info, **metrics(cat, res.emulator, res.validity, res.split,
                                            res.ebv, res.ebv_err)}  # fmt: skip
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
