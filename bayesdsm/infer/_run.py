"""Top-level drivers: one star with NumPyro NUTS, a catalog in memory, a catalog to disk.

:func:`run_inference` streams results: chunk ``k`` of ``chunk_size`` stars is written to
``<parts>/chunk_<k>.parquet`` atomically (temporary file, then rename), and
``<parts>/manifest.json`` records the config, the catalog size and the finished chunks.
A rerun with the same config skips finished chunks, so an interrupted run resumes and
loses nothing; the final table is the concatenation in input order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bayesdsm._util import atomic_path
from bayesdsm.infer._cascade import infer_arrays
from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._inputs import build_posterior, star_arrays
from bayesdsm.infer._posterior import PARAMS, Posterior, StarArrays, star_model

__all__ = ["infer_catalog", "run_inference", "nuts_one_star"]


def nuts_one_star(
    post: Posterior,
    star: StarArrays,
    *,
    key=None,
    num_warmup=500,
    num_samples=500,
    num_chains=2,
    init_z=None,
):
    """NumPyro ``MCMC(NUTS)`` on one star (the reference path; slow per star).

    Returns the :class:`numpyro.infer.MCMC` object (``get_samples()`` holds ``z`` and the
    deterministic physical sites of ``post.params``: :data:`PARAMS`, and ``xi`` for a
    two-component model).
    """
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS, init_to_value

    key = jax.random.PRNGKey(0) if key is None else key
    star = StarArrays(*(jnp.asarray(a) for a in star))
    kw = (
        {}
        if init_z is None
        else {"init_strategy": init_to_value(values={"z": jnp.asarray(init_z)})}
    )
    mcmc = MCMC(
        NUTS(star_model, dense_mass=True, **kw),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(key, post, star)
    return mcmc


def _ids(catalog):
    sid = np.asarray(catalog.source_id)
    if sid.dtype.kind in "iu" and len(np.unique(sid)) == len(sid):
        return sid.astype(np.int64)
    return np.arange(len(catalog), dtype=np.int64)


def _table(cols, catalog, rows, params=PARAMS):
    """The output table of ``rows`` from the engine's columns, with the summaries of
    ``params`` (the posterior's :attr:`~Posterior.params`)."""
    from astropy.table import Table

    t = Table()
    t["source_id"] = np.asarray(catalog.source_id)[rows]
    t["row"] = np.asarray(rows, np.int64)
    for p in params:
        for tag in ("p16", "p50", "p84"):
            t[f"{p}_{tag}"] = cols[f"{p}_{tag}"]
    for name in (
        "rhat_max",
        "ess_min",
        "n_divergent",
        "pareto_k",
        "n_modes",
        "mode_weight_2",
        "chi2_dof",
        "validity",
        "converged",
    ):
        t[name] = cols[name]
    t["method"] = cols["method"].astype(str)
    t["flags"] = cols["flags"].astype(str)
    return t


def infer_catalog(model, catalog, config: InferConfig | None = None, *, theta_density=None):
    """Posterior summaries for every star of ``catalog``, in input order (astropy Table).

    Columns: ``source_id``, ``row``, ``<p>_p16/_p50/_p84`` for p in teff, logg, feh, mu,
    dist_pc, ebv (and xi, the weight of the second extinction component, for a
    two-component model, K = 2); ``rhat_max`` (NaN for PSIS stars: independent draws),
    ``ess_min``, ``n_divergent``, ``pareto_k``, ``n_modes``, ``mode_weight_2``,
    ``chi2_dof``, ``validity`` (training density at the MAP), ``converged`` (met the
    ESS/R̂ or PSIS bar; every star that did not is flagged ``multimodal`` or
    ``not_converged``), ``method`` (psis, hmc, hmc_long, nuts, nuts_more: the tier whose
    draws stand, with ``+psis`` where a PSIS round on its chains met the bar) and
    ``flags`` (comma-separated, see :data:`FLAGS`; ``xi_prior_dominated`` where ξ's
    posterior s.d. exceeds 1/√2, its N(0, 1) prior's over √2: :data:`XI_PRIOR_SD`).
    """
    from astropy.table import vstack

    config = config or InferConfig()
    post = build_posterior(model, config, theta_density)
    stars, flags = star_arrays(catalog, config, getattr(post.emulator, "bands", None))
    ids = _ids(catalog)
    parts = []
    for s in range(0, max(len(catalog), 1), config.batch_size):  # an empty catalog: 0 rows
        rows = np.arange(s, min(s + config.batch_size, len(catalog)))
        cols = infer_arrays(post, stars.take(rows), ids[rows], config, [flags[r] for r in rows])
        parts.append(_table(cols, catalog, rows, post.params))
    return vstack(parts)


def run_inference(
    model,
    catalog,
    out,
    config: InferConfig | None = None,
    *,
    theta_density=None,
    idata_dir=None,
    parts_dir=None,
    log=print,
):
    """Infer every star and write the table ``out`` (format from its extension), streaming
    chunks to ``parts_dir`` (default ``<out>.parts``) and resuming finished ones.

    With ``idata_dir``, each chunk's equal-weight draws go to
    ``idata_dir/chunk_<k>.nc`` as ArviZ InferenceData (dims chain=1, draw, star).
    """
    from astropy.table import Table, vstack

    from bayesdsm.config import to_dict

    config = config or InferConfig()
    out = Path(out)
    parts = Path(parts_dir) if parts_dir else out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    manifest_path = parts / "manifest.json"
    cfg = to_dict(config)
    n = len(catalog)
    n_chunks = max(int(np.ceil(n / config.chunk_size)), 1)  # an empty catalog: one empty chunk
    manifest = {"config": cfg, "n_stars": n, "chunk_size": config.chunk_size, "done": []}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("config") == cfg and old.get("n_stars") == n:
            manifest["done"] = [
                k for k in old.get("done", []) if (parts / f"chunk_{k:05d}.parquet").exists()
            ]
    post = build_posterior(model, config, theta_density)
    stars, flags = star_arrays(catalog, config, getattr(post.emulator, "bands", None))
    ids = _ids(catalog)
    for k in range(n_chunks):
        if k in manifest["done"]:
            continue
        rows = np.arange(k * config.chunk_size, min((k + 1) * config.chunk_size, n))
        res = infer_arrays(
            post,
            stars.take(rows),
            ids[rows],
            config,
            [flags[r] for r in rows],
            keep_draws=400 if idata_dir else 0,
        )
        cols, draws = res if idata_dir else (res, None)
        with atomic_path(parts / f"chunk_{k:05d}.parquet") as tmp:
            _table(cols, catalog, rows, post.params).write(tmp, format="parquet", overwrite=True)
        if idata_dir:
            path = Path(idata_dir) / f"chunk_{k:05d}.nc"
            _write_idata(draws, catalog, rows, path, post.params)
        manifest["done"] = sorted(set(manifest["done"]) | {k})
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
        log(f"chunk {k + 1}/{n_chunks}: {len(rows)} stars")
    table = vstack([Table.read(parts / f"chunk_{k:05d}.parquet") for k in range(n_chunks)])
    fmt = {".parquet": "parquet", ".fits": "fits", ".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}
    with atomic_path(out) as tmp:
        table.write(tmp, format=fmt.get(out.suffix, None), overwrite=True)
    return table


def _write_idata(draws, catalog, rows, path: Path, params=PARAMS):
    import arviz as az

    post = {p: draws[None, :, :, j].transpose(0, 2, 1) for j, p in enumerate(params)}
    idata = az.from_dict(
        posterior=post,
        coords={"star": np.asarray(catalog.source_id)[rows]},
        dims={p: ["star"] for p in params},
    )
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))
