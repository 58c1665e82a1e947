"""Observing the drawn stars (photometry, parallaxes, θ̂, reddening prior) and
:func:`simulate_survey`, which returns the catalog with its truth."""

from __future__ import annotations

import numpy as np

from bayesdsm.catalog import Catalog
from bayesdsm.conventions import BAND_SURVEY
from bayesdsm.errors import ConfigError
from bayesdsm.simulate._config import SimConfig, parallax_error, photometric_error
from bayesdsm.simulate._draw import draw_survey, galactic_to_icrs, native_band
from bayesdsm.simulate._rv import RV_REF, rv_stream, rv_table
from bayesdsm.simulate._truth import StellarModelTruth, Truth, load_isochrones, system_name


def _observe(rng, st, cfg: SimConfig, truth):
    """Add photometric, parallax, θ and reddening-prior noise; returns catalog arrays."""
    n, nb = len(st["mu"]), len(cfg.bands)
    m_true = st["M"] + st["mu"][:, None] + st["A"]
    ra, dec = galactic_to_icrs(st["l"], st["b"])
    mag = np.full((n, nb), np.nan)
    err = np.full((n, nb), np.nan)
    observed = np.zeros((n, nb), bool)
    for k, band in enumerate(cfg.bands):
        nz = cfg.band_noise[band]
        native = m_true[:, k] + native_band(band)
        sig = photometric_error(native, nz)
        det = (native >= nz.bright) & (native <= nz.m5) & (rng.uniform(size=n) >= nz.loss)
        if BAND_SURVEY.get(band) == "ps1":
            det &= dec > cfg.ps1_dec_min
        if band == "G":
            det[:] = True
        noise = rng.normal(size=n) * np.hypot(sig, cfg.unreported_mag_err)
        mag[det, k] = m_true[det, k] + noise[det]
        err[det, k] = sig[det]
        observed[:, k] = det
    # parallax
    g_true = m_true[:, cfg.bands.index("G")]
    plx_err = parallax_error(g_true, cfg) * np.exp(cfg.parallax_scatter * rng.normal(size=n))
    plx_true = 1000.0 / st["dist"]
    plx = plx_true + plx_err * rng.normal(size=n)
    # θ
    theta_hat = np.empty((n, 3))
    cov = np.empty((n, 3, 3))
    offsets = np.zeros((n, 3))
    for s in cfg.surveys:
        sel = st["survey"] == s.name
        ns = int(sel.sum())
        if ns == 0:
            continue
        scale = np.exp(cfg.theta_err_scatter * rng.normal(size=ns))
        scale *= 1 + 0.5 * 10 ** (0.8 * (st["m_sel"][sel] - s.faint))
        sd = np.asarray(s.theta_err)[None, :] * scale[:, None]
        rho = np.eye(3)
        rho[0, 1] = rho[1, 0] = s.theta_corr[0]
        rho[0, 2] = rho[2, 0] = s.theta_corr[1]
        rho[1, 2] = rho[2, 1] = s.theta_corr[2]
        c = sd[:, :, None] * rho[None] * sd[:, None, :]
        c_true = c + np.diag(np.square(cfg.unreported_theta_err))[None]
        chol = np.linalg.cholesky(c_true)
        eps = np.einsum("nij,nj->ni", chol, rng.normal(size=(ns, 3)))
        offsets[sel] = s.theta_offset
        theta_hat[sel] = st["theta"][sel] + np.asarray(s.theta_offset) + eps
        cov[sel] = c
    # reddening prior (Green et al. 2021 §3.3)
    _, z = cfg.galaxy.galactocentric(st["l"], st["b"], st["dist"])
    z_plane = np.abs(z)
    sfd = z_plane > cfg.ebv_z_threshold
    bay = ~sfd & (dec > cfg.bayestar_dec_min)
    ebv_ref = np.where(sfd, st["col"], np.where(bay, st["ebv"], 0.0))
    sig_b = np.hypot(rng.uniform(*cfg.bayestar_err, n), cfg.bayestar_frac_err * st["ebv"])
    ebv_err = np.where(sfd, cfg.sfd_frac_err * st["col"], np.where(bay, sig_b, st["col"]))
    ebv_err = np.maximum(ebv_err, 1e-3)
    z = rng.normal(size=n)
    ebv_hat = np.where(sfd | bay, ebv_ref + np.hypot(ebv_err, cfg.unreported_ebv_err) * z, 0.0)
    source = np.where(sfd, "sfd", np.where(bay, "bayestar", "none"))
    return {
        "mag": mag, "mag_err": err, "observed": observed, "parallax": plx,
        "parallax_err": plx_err, "theta": theta_hat, "theta_cov": cov, "ebv": ebv_hat,
        "ebv_err": ebv_err, "ebv_source": source, "ra": ra, "dec": dec,
        "theta_offset": offsets, "m_true": m_true,
    }  # fmt: skip


# ---------------------------------------------------------------------------- driver


def simulate_survey(config: SimConfig | None = None, truth: Truth | None = None) -> Catalog:
    """Simulate a survey catalog with a known truth (see the module docstring).

    Args:
        config: the simulation set-up; default :class:`SimConfig()`.
        truth: a :class:`Truth`; default :class:`StellarModelTruth` (needs ``bayesdsm[sim]``).

    Returns:
        A :class:`Catalog` with ``extra`` truth columns and ``meta`` provenance.

    Raises:
        ImportError: when the stellar-model data packages are needed but not installed.
    """
    cfg = config or SimConfig()
    if truth is None:
        truth = StellarModelTruth(cfg.bands, av_per_ebv=cfg.av_per_ebv)
    if tuple(truth.bands) != cfg.bands:
        raise ConfigError(f"truth bands {truth.bands} differ from config bands {cfg.bands}")
    if getattr(truth, "needs_mbol", False) and cfg.population_source != "isochrones":
        raise ConfigError("this truth needs isochrone populations (population_source)")
    iso = None
    if cfg.population_source == "isochrones":
        iso = truth.isochrones if hasattr(truth, "isochrones") else load_isochrones()
    rng = np.random.default_rng(cfg.seed)
    n_dup = int(round(cfg.overlap_fraction * cfg.n_stars)) if len(cfg.surveys) > 1 else 0
    n_uni = cfg.n_stars - n_dup
    counts = np.floor(np.array([s.fraction for s in cfg.surveys]) * n_uni).astype(int)
    counts[0] += n_uni - counts.sum()
    stats = {"candidates": 0, "weight_exceeded": 0, "rejected_filled_bc": 0,
             "rejected_after_extinction": 0,
             "rejected_beyond_extinction_table": 0}  # fmt: skip
    # the R(V) table needs the passbands (speclite, bayesdsm[sim]): built only when R(V) varies
    table, rv_rng = (rv_table(cfg.bands) if cfg.rv_varies else None), rv_stream(cfg.seed)
    parts = [draw_survey(rng, s, int(c), cfg, truth, iso, stats, rv_rng, table)
             for s, c in zip(cfg.surveys, counts) if c > 0]  # fmt: skip
    st = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    src = np.arange(len(st["mu"]), dtype=np.int64) + 1
    if n_dup:  # repeat observations of first-survey stars by the others (θ re-observed)
        first = np.nonzero(st["survey"] == cfg.surveys[0].name)[0]
        pick = rng.choice(first, size=n_dup, replace=False)
        others = [s for s in cfg.surveys[1:]]
        p = np.array([s.fraction for s in others]) / sum(s.fraction for s in others)
        to = np.array([others[i].name for i in rng.choice(len(others), size=n_dup, p=p)])
        dup = {k: v[pick] for k, v in st.items()}
        dup["survey"] = to
        st = {k: np.concatenate([st[k], dup[k]]) for k in st}
        src = np.concatenate([src, src[pick]])
    ob = _observe(rng, st, cfg, truth)
    if n_dup:  # the repeat rows share the first row's photometry and parallax
        n0 = len(src) - n_dup
        for k in ("mag", "mag_err", "observed", "parallax", "parallax_err", "ebv", "ebv_err",
                  "ebv_source"):  # fmt: skip
            ob[k][n0:] = ob[k][pick]
    # low-extinction R (E = 0.01) and ∂R/∂R(V) (E → 0) at each star's own R(V)
    r_true = truth.extinction(st["theta"], np.full(len(src), 0.01)) / 0.01
    dr_drv = None
    if table is not None:
        dr_drv = r_true * table.dratio_drv(st["theta"][:, 0], st["rv"])
        r_true = r_true * table.ratio(st["theta"][:, 0], np.full(len(src), 0.01), st["rv"])
    f32 = np.float32
    extra = {
        "true_teff": st["theta"][:, 0].astype(f32),
        "true_logg": st["theta"][:, 1].astype(f32),
        "true_feh": st["theta"][:, 2].astype(f32),
        "true_mass": st["mass"].astype(f32),
        "true_log_age": st["log_age"].astype(f32),
        "true_population": st["pop"].astype(str),
        "true_mu": st["mu"],
        "true_ebv": st["ebv"],
        "true_av": cfg.av_per_ebv * st["ebv"] * (st["rv"] / RV_REF),
        "true_ebv_column": st["col"].astype(f32),
        "true_RV": st["rv"].astype(f32),
        "true_RV_field": st["rv_field"].astype(f32),
        "ebv_source": ob["ebv_source"],
    }
    for k, band in enumerate(cfg.bands):
        extra[f"true_M_{band}"] = st["M"][:, k]
        extra[f"true_R_{band}"] = r_true[:, k].astype(f32)
        extra[f"true_A_{band}"] = st["A"][:, k].astype(f32)
        if dr_drv is not None:  # R(V) varies
            extra[f"true_dR_dRV_{band}"] = dr_drv[:, k].astype(f32)
    import bayesdsm

    meta = {
        "simulated": True,
        "bayesdsm_version": bayesdsm.__version__,
        "sim_config": cfg.to_dict(),
        "truth": getattr(truth, "meta", {"truth": type(truth).__name__}),
        "sampling_stats": stats,
        "rv": {
            "mean": cfg.rv_mean,
            "sigma": cfg.rv_sigma,
            "star_sigma": cfg.rv_star_sigma,
            "stream": "SeedSequence(seed).spawn(1)[0]",
            **(table.meta if table is not None else {"rv_ref": RV_REF}),
        },
        "photometric_systems": {b: system_name(b) for b in cfg.bands},
        "floors_applied": False,
    }
    order = np.lexsort((st["survey"], src))
    cat = Catalog.from_arrays(
        bands=cfg.bands,
        mag=ob["mag"],
        mag_err=ob["mag_err"],
        observed=ob["observed"],
        theta=ob["theta"],
        theta_cov=ob["theta_cov"],
        parallax=ob["parallax"],
        parallax_err=ob["parallax_err"],
        ebv=ob["ebv"],
        ebv_err=ob["ebv_err"],
        survey=st["survey"],
        source_id=src,
        ra=ob["ra"],
        dec=ob["dec"],
        l=st["l"],
        b=st["b"],
        extra=extra,
        meta=meta,
    )
    return cat.subset(order)
