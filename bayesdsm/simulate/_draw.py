"""Drawing stars: IMF and isochrone sampling, sight lines, and rejection sampling of each
survey's visible volume with an adaptive proposal."""

from __future__ import annotations

import numpy as np

from bayesdsm.mist import MIST_SYSTEM, system_offset
from bayesdsm.simulate._config import Population, SimConfig, SpecSurvey
from bayesdsm.simulate._rv import draw_field_rv, draw_star_rv


def _imf_pdf(m, imf: str):
    """Unnormalised IMF dN/dm: Kroupa (2001) or Chabrier (2003, system) on 0.08-150 Msun."""
    m = np.asarray(m, np.float64)
    if imf == "kroupa":
        return np.where(m < 0.5, (m / 0.5) ** -1.3, (m / 0.5) ** -2.3)
    lo = np.exp(-((np.log10(np.minimum(m, 1.0)) - np.log10(0.22)) ** 2) / (2 * 0.57**2)) / m
    hi = np.exp(-((np.log10(0.22)) ** 2) / (2 * 0.57**2)) * m**-2.3
    return np.where(m < 1.0, lo, hi)


def _sample_isochrone_stars(rng, iso, pop: Population, n: int, cfg: SimConfig, q_eep=None):
    """Draw n stars of one population: clusters share (feh, age).

    EEPs are drawn with relative density ``q_eep`` (per EEP index; default uniform) and carry
    the importance weight IMF(m)·|dm/dEEP| / q.
    """
    n_cl = -(-n // cfg.cluster_size)
    out = {k: [] for k in ("teff", "logg", "feh", "mbol", "mass", "log_age", "logw", "eep")}
    fmin, fmax = iso.feh[0], iso.feh[-1]
    for _ in range(n_cl):
        feh = float(np.clip(rng.normal(pop.feh_mean, pop.feh_sigma), fmin, fmax))
        age = rng.uniform(pop.age_min_gyr, pop.age_max_gyr)
        la = float(np.clip(np.log10(age * 1e9), iso.log_age[0], iso.log_age[-1]))
        r = iso.interpolate(feh, la)
        k = cfg.cluster_size
        if len(r["eep"]) < 2:
            continue
        # Segments between consecutive valid EEPs (gaps are not crossed).
        e = r["eep"]
        seg = np.nonzero(np.diff(e) == 1)[0]
        if len(seg) == 0:
            continue
        q = np.ones(len(seg)) if q_eep is None else q_eep[e[seg].astype(int)]
        q = q / q.sum()
        pick = rng.choice(len(seg), size=k, p=q)
        j = seg[pick]
        u = rng.uniform(size=k)

        def lerp(c, j=j, u=u, r=r):
            return r[c][j] * (1 - u) + r[c][j + 1] * u

        mass = lerp("initial_mass")
        dm = np.abs(r["initial_mass"][j + 1] - r["initial_mass"][j])
        w = _imf_pdf(mass, cfg.imf) * dm / q[pick]
        out["teff"].append(10 ** _lerp_log(r["Teff"], j, u))
        out["logg"].append(lerp("log_g"))
        out["mbol"].append(lerp("Mbol"))
        out["mass"].append(mass)
        out["feh"].append(np.full(k, feh))
        out["log_age"].append(np.full(k, la))
        out["logw"].append(np.log(np.maximum(w, 1e-300)))
        out["eep"].append(e[j])
    return {k: np.concatenate(v)[:n] for k, v in out.items()}


def _lerp_log(x, j, u):
    return np.log10(x[j]) * (1 - u) + np.log10(x[j + 1]) * u


def _sample_parametric_stars(rng, pop: Population, n: int, cfg: SimConfig):
    """A stand-in θ population without stellar models: 70% dwarfs, 30% giants."""
    giant = rng.uniform(size=n) < 0.3
    teff = np.where(giant, rng.uniform(4000, 5300, n), rng.uniform(4000, 7000, n))
    logg_d = 4.75 - 0.6 * ((teff - 4000) / 3000) ** 1.5 + rng.normal(0, 0.1, n)
    logg = np.where(giant, rng.uniform(1.0, 3.6, n), np.minimum(logg_d, 4.9))
    feh = np.clip(rng.normal(pop.feh_mean, pop.feh_sigma, n), -2.5, 0.5)
    nan = np.full(n, np.nan)
    la = np.full(n, np.log10(pop.age_max_gyr * 1e9))
    return {"teff": teff, "logg": logg, "feh": feh, "mbol": nan, "mass": nan,
            "log_age": la, "logw": np.zeros(n), "eep": np.where(giant, 1.0, 0.0)}  # fmt: skip


# ---------------------------------------------------------------------------- selection


def _fields(rng, survey: SpecSurvey):
    """Random field centres, uniform on the sphere within the survey's declination range."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    s0, s1 = np.sin(np.deg2rad([survey.dec_min, survey.dec_max]))
    dec = np.rad2deg(np.arcsin(rng.uniform(s0, s1, survey.n_fields)))
    ra = rng.uniform(0.0, 360.0, survey.n_fields)
    g = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    return g.l.deg, g.b.deg


def _jitter(rng, l0, b0, radius_deg):
    """Positions uniform in a small disk of ``radius_deg`` around (l0, b0)."""
    r = radius_deg * np.sqrt(rng.uniform(size=len(l0)))
    phi = rng.uniform(0.0, 2 * np.pi, len(l0))
    b = np.clip(b0 + r * np.sin(phi), -90.0, 90.0)
    l = (l0 + r * np.cos(phi) / np.maximum(np.cos(np.deg2rad(b)), 0.05)) % 360.0
    return l, b


def galactic_to_icrs(l, b):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
    return c.ra.deg, c.dec.deg


def native_band(band):
    """Offset from bayesdsm's stored system to the band's native survey system."""
    return -system_offset(band, MIST_SYSTEM[band])


_N_EEP_BINS = 180  # EEP bins of width 10 for the adaptive proposal


def _candidates(rng, k, ctx, q_pop, q_eep, q_field):
    """A batch of k candidate (population, star, field) triples and their weights."""
    cfg, truth, iso, survey, cum, d_grid = (ctx[c] for c in ("cfg", "truth", "iso", "survey",
                                                             "cum", "d_grid"))  # fmt: skip
    pops = cfg.populations
    ip = rng.choice(len(pops), size=k, p=q_pop)
    fi = rng.choice(len(q_field), size=k, p=q_field)
    keys = ("teff", "logg", "feh", "mbol", "mass", "log_age", "logw", "eep")
    st = {c: np.zeros(k) for c in keys}
    for j, pop in enumerate(pops):
        sel = ip == j
        if not sel.any():
            continue
        if iso is not None:
            qe = None if q_eep is None else np.repeat(q_eep[j], 10)
            draw = _sample_isochrone_stars(rng, iso, pop, int(sel.sum()), cfg, qe)
        else:
            draw = _sample_parametric_stars(rng, pop, int(sel.sum()), cfg)
        for c in keys:
            st[c][sel] = draw[c]
    theta = np.stack([st["teff"], st["logg"], st["feh"]], -1)
    ok = (
        (theta[:, 0] >= cfg.teff_range[0])
        & (theta[:, 0] <= cfg.teff_range[1])
        & (theta[:, 1] >= cfg.logg_range[0])
        & (theta[:, 1] <= cfg.logg_range[1])
    )
    if hasattr(truth, "valid"):
        filled = ~truth.valid(theta) & ok
        ctx["stats"]["rejected_filled_bc"] += int(filled.sum())
        ok &= ~filled
    M = np.full((k, len(cfg.bands)), np.nan)
    M[ok] = truth.absolute_magnitudes(theta[ok], st["mbol"][ok])
    m_abs = M[:, ctx["ks"]] + ctx["to_native"]
    dmax = np.where(ok, 10 ** ((survey.faint - m_abs + 5) / 5), 0.0)
    w = np.zeros(k)
    for j in range(len(pops)):
        s = (ip == j) & ok
        cmax = _interp_rows(cum[j][fi[s]], d_grid, dmax[s])
        w[s] = np.exp(st["logw"][s]) * cmax / (q_pop[j] * q_field[fi[s]] * len(q_field))
    return {"ip": ip, "fi": fi, "st": st, "theta": theta, "M": M, "dmax": dmax, "w": w}


def _adapt(c, n_pop, n_field, mix=0.3):
    """Proposal densities (population, EEP bin, field) ∝ the pilot's mean weights."""
    w, ip = c["w"], c["ip"]
    tot = np.bincount(ip, weights=w, minlength=n_pop)
    q_pop = (1 - mix) * tot / max(tot.sum(), 1e-300) + mix / n_pop
    q_eep = np.ones((n_pop, _N_EEP_BINS))
    eb = np.clip((c["st"]["eep"] // 10).astype(int), 0, _N_EEP_BINS - 1)
    for j in range(n_pop):
        s = ip == j
        sw = np.bincount(eb[s], weights=w[s], minlength=_N_EEP_BINS)
        cn = np.bincount(eb[s], minlength=_N_EEP_BINS)
        mean = np.where(cn > 0, sw / np.maximum(cn, 1), 0.0)
        if mean.max() > 0:
            q_eep[j] = (1 - mix) * mean / mean.max() + mix * mean[cn > 0].mean() / mean.max()
    fw = np.bincount(c["fi"], weights=w, minlength=n_field)
    q_field = (1 - mix) * fw / max(fw.sum(), 1e-300) + mix / n_field
    return q_pop / q_pop.sum(), q_eep, q_field / q_field.sum()


def draw_survey(rng, survey, n, cfg, truth, iso, stats, rv_rng, rv_table):
    """Rejection-sample n stars visible to one survey; returns a dict of per-star arrays.

    A pilot batch with uniform proposals tunes the proposal over populations, EEP bins and
    fields; the bound on the weights is the pilot's maximum (weights above it, counted in
    ``weight_exceeded``, are accepted with probability 1: a small, documented bias).
    Each field's and star's R(V) come from ``rv_rng`` (:func:`._rv.rv_stream`), and A is
    the truth's times ``rv_table``'s ratio at the star's R(V) (:mod:`._rv`; None when
    R(V) does not vary).
    """
    lf, bf = _fields(rng, survey)
    rv_field = draw_field_rv(rv_rng, len(lf), cfg)
    d_grid = np.concatenate([[0.0], np.geomspace(1.0, 1.5e5, 600)])
    pops = cfg.populations
    ctx = {
        "cfg": cfg, "truth": truth, "iso": iso, "survey": survey, "d_grid": d_grid,
        "cum": [cfg.galaxy.cumulative_counts(p.name, lf, bf, d_grid) for p in pops],
        "ks": cfg.bands.index(survey.selection_band),
        "to_native": native_band(survey.selection_band), "stats": stats,
    }  # fmt: skip
    clump = np.exp(cfg.dust_clumpiness * rng.normal(size=len(lf)) - cfg.dust_clumpiness**2 / 2)
    q_pop = np.array([p.proposal for p in pops]) / sum(p.proposal for p in pops)
    pilot = _candidates(rng, cfg.batch_size, ctx, q_pop, None, np.full(len(lf), 1 / len(lf)))
    q_pop, q_eep, q_field = _adapt(pilot, len(pops), len(lf))
    if iso is None:
        q_eep = None
    c = _candidates(rng, cfg.batch_size, ctx, q_pop, q_eep, q_field)
    wmax = np.quantile(c["w"], 0.9999)
    parts, n_acc = [], 0
    while n_acc < n:
        if parts:
            c = _candidates(rng, cfg.batch_size, ctx, q_pop, q_eep, q_field)
        w = c["w"]
        acc = rng.uniform(size=len(w)) * wmax < w
        stats["candidates"] += len(w)
        stats["weight_exceeded"] += int((w > wmax).sum())
        idx = np.nonzero(acc)[0]
        ip, fi, dmax = c["ip"][idx], c["fi"][idx], c["dmax"][idx]
        d = np.empty(len(idx))  # distance along the field, ∝ n(s) s² on [0, dmax]
        for j in range(len(pops)):
            s = ip == j
            rows = ctx["cum"][j][fi[s]]
            target = rng.uniform(size=s.sum()) * _interp_rows(rows, d_grid, dmax[s])
            d[s] = [np.interp(t, r, d_grid) for t, r in zip(target, rows)]
        l, b = _jitter(rng, lf[fi], bf[fi], cfg.field_radius_deg)
        ebv = cfg.dust.reddening(l, b, d) * clump[fi]
        col = cfg.dust.column(l, b) * clump[fi]
        th, M = c["theta"][idx], c["M"][idx]
        rv = draw_star_rv(rv_rng, rv_field[fi], cfg)
        A = truth.extinction(th, ebv)
        if rv_table is not None:  # None: R(V) = 3.1 for every star, the truth's own A
            A = A * rv_table.ratio(th[:, 0], ebv, rv)
        mu = 5 * np.log10(d) - 5
        m_sel = M[:, ctx["ks"]] + mu + A[:, ctx["ks"]] + ctx["to_native"]
        vis = (m_sel >= survey.bright) & (m_sel <= survey.faint)
        stats["rejected_after_extinction"] += int((~vis).sum())
        # A truth tabulated to a largest E (MIST: A_V ≤ 6) would clamp A beyond it, so
        # such stars would carry wrong photometry: they are not drawn.
        beyond = ebv > getattr(truth, "ebv_max", np.inf)
        stats["rejected_beyond_extinction_table"] += int((vis & beyond).sum())
        vis &= ~beyond
        part = {
            "theta": th, "M": M, "A": A, "mu": mu, "dist": d, "ebv": ebv, "col": col,
            "l": l, "b": b, "mass": c["st"]["mass"][idx], "log_age": c["st"]["log_age"][idx],
            "pop": np.array([pops[j].name for j in ip]), "m_sel": m_sel, "rv": rv,
            "rv_field": rv_field[fi],
        }  # fmt: skip
        parts.append({key: v[vis] for key, v in part.items()})
        n_acc += int(vis.sum())
    out = {key: np.concatenate([p[key] for p in parts])[:n] for key in parts[0]}
    out["survey"] = np.full(n, survey.name)
    return out


def _interp_rows(rows, grid, x):
    """Row-wise linear interpolation of ``rows`` (K, D) on ``grid`` (D,) at ``x`` (K,)."""
    if len(x) == 0:
        return np.zeros(0)
    i = np.clip(np.searchsorted(grid, x) - 1, 0, len(grid) - 2)
    t = np.clip((x - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0)
    a = np.arange(len(x))
    return rows[a, i] * (1 - t) + rows[a, i + 1] * t


# ---------------------------------------------------------------------------- observation
