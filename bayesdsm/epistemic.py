"""Epistemic (weight) uncertainty of a trained emulator by SVI, and its predictive spread.

Green et al. (2021) fit one network; how well the data pin down its weights is not part
of the paper. Here the weights get a variational posterior around the trained (MAP)
network:

1. The covariance of every star is frozen at the trained network
   (:func:`bayesdsm.likelihood.frozen_whitening`), as in one training iteration (§4).
2. :func:`bayesdsm.emulator_model.emulator_model` with ``posterior_scale = n_bands / 2`` is the
   model: its likelihood is the Gaussian exp(-χ²/2) and its weight priors are Eq. 15's
   penalties at the same temperature.
3. A guide, :class:`~numpyro.infer.autoguide.AutoLowRankMultivariateNormal` (default) or
   :class:`~numpyro.infer.autoguide.AutoNormal`, starts at the MAP weights with a small
   scale and is fitted by SVI (Adam on minibatches, each scaled to all N stars).
4. ``n_draws`` weight samples from the guide go into :attr:`StellarModel.epistemic`.

:func:`predictive_spread` turns the samples into the mean and standard deviation over
draws of B·M and R at any θ (``bayesdsm predict`` writes the latter as ``spread_<col>``).
The spread is a 1σ epistemic error of the emulator itself, in mag (B·M) and in mag per
mag of E(B-V)-like reddening (R); it shrinks as 1/√N with the number of training stars
and grows where the training set is sparse.

The reddening of each star is the catalog's prior (Ê, σ_E), as in ``bayesdsm evaluate``:
pass the catalog the model was trained on, after :func:`bayesdsm.cuts.prepare`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from bayesdsm._util import chunked_map, take
from bayesdsm.emulator import Emulator, batched, emulator_arrays, predict_colours
from bayesdsm.emulator_model import (
    RegularizationConfig,
    emulator_from_params,
    emulator_model,
    weight_priors,
)
from bayesdsm.errors import ConfigError, TrainingError
from bayesdsm.likelihood import (
    StarData,
    chi2_whitened,
    dof,
    frozen_whitening,
    model_magnitudes,
    residual,
    stardata_from_catalog,
)
from bayesdsm.model_file import StellarModel
from bayesdsm.train._svi import init_state, run_steps

__all__ = [
    "EpistemicConfig",
    "GuideFit",
    "fit_guide",
    "fit_weight_uncertainty",
    "predictive_spread",
    "weight_sites",
]

_GUIDES = ("lowrank", "normal")


@dataclass(frozen=True)
class EpistemicConfig:
    """Settings of :func:`fit_weight_uncertainty`.

    Attributes:
        guide: ``"lowrank"`` (AutoLowRankMultivariateNormal: correlated weights) or
            ``"normal"`` (AutoNormal: independent weights).
        rank: rank of the low-rank guide's covariance factor.
        steps: SVI steps.
        batch_size: stars per minibatch (the whole set when it has fewer stars).
        lr: Adam learning rate (in whitened units, see below).
        lr_final: the learning rate falls to this fraction of ``lr`` by the last step
            (cosine).
        init_scale: initial standard deviation of the whitened weights z (1: the guide
            starts as the Gauss-Newton Laplace approximation, exact for a linear network;
            a sigmoid network has directions the GN curvature misses, so the default
            starts narrow and lets the ELBO widen it). The guide works in z, w = w_MAP + T z
            with T Tᵀ = H⁻¹ and H the Gauss-Newton precision (+ prior), so one learning
            rate suits weights whose posterior widths differ by orders of magnitude and
            are strongly correlated.
        precondition_stars: stars (a random subset) used to compute H; the SVI uses all.
        flat_prior_scale: σ of a weak Normal(0, σ) prior on the weights whose prior is
            flat in the paper (biases, output kernel), which makes the posterior proper
            in directions the data do not constrain.
        particles: Monte Carlo samples of the ELBO per step.
        n_draws: weight samples stored in the model (S ≥ 2).
        sites: the weight arrays treated as uncertain (names of
            :func:`bayesdsm.emulator.emulator_arrays`); None: all of them. The others
            stay at the MAP.
        max_chi2_dof: leave out stars whose χ²/dof at the MAP exceeds this (outliers,
            as the paper's training does); None keeps all.
        l2_stellar, l1_extinction, n_bands_norm: Eq. 15's penalties; None takes them from
            the model's training config (``config["train"]``), else the paper's values.
        dtype: ``"float32"`` or ``"float64"``.
        chunk_size: stars per jitted chunk when freezing the covariances.
        steps_per_call: SVI steps per jitted call (one progress update each).
        seed: seeds the minibatches, the ELBO noise and the draws.
    """

    guide: str = "lowrank"
    rank: int = 10
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-2
    lr_final: float = 0.1
    init_scale: float = 0.1
    precondition_stars: int = 4096
    flat_prior_scale: float = 1.0
    particles: int = 1
    n_draws: int = 100
    sites: tuple[str, ...] | None = None
    max_chi2_dof: float | None = 5.0
    l2_stellar: float | None = None
    l1_extinction: float | None = None
    n_bands_norm: int | None = None
    dtype: str = "float32"
    chunk_size: int = 8192
    steps_per_call: int = 100
    seed: int = 0

    def __post_init__(self):
        if self.guide not in _GUIDES:
            raise ConfigError(f"EpistemicConfig.guide must be one of {_GUIDES}, not {self.guide!r}")
        for name in ("rank", "steps", "batch_size", "particles", "chunk_size", "steps_per_call",
                     "precondition_stars"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"EpistemicConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if int(self.n_draws) < 2:
            raise ConfigError(f"EpistemicConfig.n_draws must be ≥ 2, got {self.n_draws}")
        if not (self.init_scale > 0 and self.lr > 0 and self.flat_prior_scale > 0):
            raise ConfigError("EpistemicConfig: init_scale, lr and flat_prior_scale must be > 0")
        if not 0 < self.lr_final <= 1:
            raise ConfigError(f"EpistemicConfig.lr_final must be in (0, 1], got {self.lr_final}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError("EpistemicConfig.dtype must be 'float32' or 'float64'")
        if self.sites is not None:
            object.__setattr__(self, "sites", tuple(self.sites))

    def regularization(self, model_config: dict | None = None) -> RegularizationConfig:
        """Eq. 15's penalties: this config's, else the training config's, else the paper's."""
        train = (model_config or {}).get("train", {}) or {}
        default = RegularizationConfig()

        def pick(name):
            own = getattr(self, name)
            return own if own is not None else train.get(name, getattr(default, name))

        return RegularizationConfig(pick("l2_stellar"), pick("l1_extinction"), pick("n_bands_norm"))


class GuideFit(NamedTuple):
    """Result of :func:`fit_guide`.

    Attributes:
        draws: ``{site: (S, ...)}`` NumPy weight samples from the fitted guide.
        losses: (steps,) the negative ELBO at each step (all N stars).
        params: the guide's fitted parameters (NumPy).
        info: JSON-able summary (guide, rank, steps, final_elbo, n_stars, ...).
    """

    draws: dict[str, np.ndarray]
    losses: np.ndarray
    params: dict[str, np.ndarray]
    info: dict


def weight_sites(emu: Emulator, sites=None) -> tuple[str, ...]:
    """The sampled weight names of ``emu``, or check ``sites``.

    All arrays but the normaliser and the extinction curvature (13 numbers, held at
    their fitted values, zero for linear extinction).
    """
    names = tuple(
        k for k in emulator_arrays(emu) if not k.startswith("theta_") and k != "R_curvature"
    )
    if sites is None:
        return names
    unknown = [s for s in sites if s not in names]
    if unknown or not sites:
        raise ConfigError(f"unknown or empty weight sites {list(unknown)}; choose from {names}")
    return tuple(sites)


def _freeze(emu: Emulator, stars: StarData, chunk: int):
    """Frozen whitened covariances W (N, n_bands, 5) and χ²/dof at the MAP network."""

    @jax.jit
    def part(s):
        W = jax.vmap(frozen_whitening, in_axes=(None, 0))(emu, s)
        c2 = jax.vmap(chi2_whitened, in_axes=(None, 0, 0))(emu, s, W)
        return W, c2 / jnp.maximum(jax.vmap(dof)(s), 1.0)

    return chunked_map(part, len(stars.mag), chunk, stars)


def _residual_of(emu: Emulator, unravel, w_flat, star: StarData):
    """The residual r(w) (n_bands,) of one star as a function of the flat free weights."""
    e = emulator_from_params(emu, unravel(w_flat))
    return residual(model_magnitudes(e, star.theta, star.ebv)[0], star)


def _whitening(
    emu, stars, W, free, reg, n_total, config
) -> tuple[np.ndarray, np.ndarray, Callable]:
    """Flat MAP weights w₀ (P,) and T (P, P) with T Tᵀ = H⁻¹, the Laplace covariance.

    H is the Gauss-Newton precision of -log p: with C⁻¹ = diag(mask/σ²) - W Wᵀ frozen,
    -log p = Σ_n ½ rₙᵀ C⁻¹ rₙ + prior, so H = Σ_n Jₙᵀ C⁻¹ Jₙ (Jₙ = ∂rₙ/∂w), here from
    ``config.precondition_stars`` stars scaled to all N, plus the Normal priors'
    precision and a unit ridge (weights the data leave free keep a width of order 1).
    """
    from jax.flatten_util import ravel_pytree

    arrays = emulator_arrays(emu)
    w0, unravel = ravel_pytree({k: arrays[k] for k in free})
    n = len(W)
    rng = np.random.default_rng(config.seed + 1)
    sub = np.sort(rng.choice(n, min(n, config.precondition_stars), replace=False))

    @jax.jit
    def part(s, w):
        jac_one = jax.jacrev(_residual_of, argnums=2)
        jac = jax.vmap(lambda st: jac_one(emu, unravel, w0, st))(s)  # (n, nb, P)
        dinv = s.mask / s.mag_err**2
        wj = jnp.einsum("nbk,nbp->nkp", w, jac)
        return jnp.einsum("nbp,nb,nbq->pq", jac, dinv, jac) - jnp.einsum("nkp,nkq->pq", wj, wj)

    H = np.zeros((w0.size, w0.size))
    step = max(1, min(config.chunk_size, 256))
    for start in range(0, sub.size, step):
        idx = sub[start : start + step]
        H += np.asarray(part(take(stars, idx), W[idx]), np.float64)
    H *= n / sub.size
    priors = weight_priors(emu, n_total, reg, (reg.n_bands_norm or emu.n_bands) / 2)

    def precision(k):  # of the prior; Laplace(b) counted as its variance 2b²
        base = getattr(priors[k], "base_dist", None)
        if isinstance(base, dist.Normal):
            p = 1.0 / np.asarray(base.scale, np.float64) ** 2
        elif isinstance(base, dist.Laplace):
            p = 0.5 / np.asarray(base.scale, np.float64) ** 2
        else:
            p = 1.0 / config.flat_prior_scale**2
        return p * np.ones(np.shape(arrays[k]))

    prior_prec = ravel_pytree({k: precision(k) for k in free})[0]
    H[np.diag_indices_from(H)] += np.asarray(prior_prec, np.float64)
    # T = V Λ^-½ so that T Tᵀ = H⁻¹; eigenvalues floored at the weakest prior precision
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    lam = np.maximum(lam, float(np.min(prior_prec)))
    return np.asarray(w0), V / np.sqrt(lam)[None, :], unravel


def _make_svi(emu: Emulator, n_total: int, reg, config: EpistemicConfig, free, w0, T, unravel):
    """SVI in whitened coordinates z: w = w_MAP + T z, T Tᵀ = Laplace covariance.

    The model of z is :func:`bayesdsm.emulator_model.emulator_model` (its log joint at w(z),
    through ``log_density`` under ``block``; the Jacobian of w(z) is constant). Its
    arguments are ``(stars, W, idx)``, as :func:`bayesdsm.train._svi.run_steps` passes
    them. Near the MAP the posterior of z is close to N(0, I), whatever the conditioning of the
    weights', so one learning rate suits all. The guide starts at z = 0 (the MAP).
    """
    import numpyro
    import optax
    from numpyro.distributions import constraints
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal
    from numpyro.infer.initialization import init_to_value
    from numpyro.infer.util import log_density

    arrays = emulator_arrays(emu)
    fixed = {k: v for k, v in arrays.items() if k not in free and not k.startswith("theta_")}
    n_norm = reg.n_bands_norm or emu.n_bands
    base = partial(emulator_model, emu, n_total=n_total, reg=reg, posterior_scale=n_norm / 2)
    if fixed:
        base = numpyro.handlers.condition(base, data=fixed)
    priors = weight_priors(emu, n_total, reg, n_norm / 2)
    dtype = jnp.asarray(w0).dtype
    w0j, Tj = jnp.asarray(w0, dtype), jnp.asarray(T, dtype)

    flat = [k for k in free if isinstance(priors[k], dist.ImproperUniform)]

    def model(stars, W, idx):
        del idx  # the minibatch's rows (no per-star parameters)
        z = numpyro.sample("z", dist.ImproperUniform(constraints.real, (), (w0j.size,)))
        w = unravel(w0j + Tj @ z)
        with numpyro.handlers.block():
            lp, _ = log_density(base, (stars, W), {}, w)
        for k in flat:  # the weak proper prior replacing the paper's flat one
            lp = lp + jnp.sum(dist.Normal(0.0, config.flat_prior_scale).log_prob(w[k]))
        numpyro.factor("log_joint", lp)

    init = init_to_value(values={"z": jnp.zeros_like(w0j)})
    if config.guide == "lowrank":
        guide = AutoLowRankMultivariateNormal(
            model, init_loc_fn=init, init_scale=config.init_scale, rank=config.rank
        )
    else:
        guide = AutoNormal(model, init_loc_fn=init, init_scale=config.init_scale)
    lr = optax.cosine_decay_schedule(config.lr, config.steps, alpha=config.lr_final)
    svi = SVI(model, guide, optax.adam(lr), Trace_ELBO(num_particles=config.particles))

    def to_weights(z):  # (S, P) -> {site: (S, ...)}
        w = jax.vmap(unravel)(w0j[None, :] + z @ Tj.T)
        return {k: np.asarray(v) for k, v in w.items()}

    return svi, guide, to_weights


def _minibatches(rng, n: int, batch: int, steps: int) -> np.ndarray:
    """(steps, batch) star indices: consecutive random permutations (epochs)."""
    batch = min(batch, n)
    per_epoch = n // batch
    perms = [rng.permutation(n)[: per_epoch * batch] for _ in range(-(-steps // per_epoch))]
    return np.concatenate(perms).reshape(-1, batch)[:steps]


def _sample_z(key, params, config: EpistemicConfig):
    """(S, P) draws of z from the fitted guide; low rank: cov = diag(s)(V Vᵀ + I)diag(s)."""
    k1, k2 = jax.random.split(key)
    if config.guide == "lowrank":
        loc, V, scale = params["auto_loc"], params["auto_cov_factor"], params["auto_scale"]
        e1 = jax.random.normal(k1, (config.n_draws, V.shape[1]), loc.dtype)
        e2 = jax.random.normal(k2, (config.n_draws, loc.size), loc.dtype)
        return loc[None, :] + (e1 @ V.T + e2) * scale[None, :]
    loc, scale = params["z_auto_loc"], params["z_auto_scale"]
    return (
        loc[None, :] + jax.random.normal(k2, (config.n_draws, loc.size), loc.dtype) * scale[None, :]
    )


def fit_guide(
    emu: Emulator, stars: StarData, config: EpistemicConfig = EpistemicConfig(), *,
    reg: RegularizationConfig | None = None, progress: bool = True,
) -> GuideFit:  # fmt: skip
    """Fit the weight posterior of ``emu`` (the MAP network) to ``stars`` by SVI.

    Args:
        emu: the trained emulator; its weights start the guide (and fix the covariance).
        stars: :class:`~bayesdsm.likelihood.StarData` of the stars (stars on axis 0),
            all with θ̂ and at least one colour.
        config: settings (``max_chi2_dof`` and ``sites`` apply here too).
        reg: Eq. 15's penalties (default: ``config.regularization()``).
        progress: show a tqdm bar on stderr.

    Raises:
        TrainingError: no star left after the χ²/dof cut, or a non-finite ELBO.
    """
    from jax.flatten_util import ravel_pytree
    from tqdm.auto import tqdm

    dtype = jnp.dtype(config.dtype)
    reg = reg or config.regularization()
    free = weight_sites(emu, config.sites)
    with jax.enable_x64(dtype == jnp.float64):
        emu = emu.astype(dtype)
        stars = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), stars)
        W, chi2_dof = _freeze(emu, stars, config.chunk_size)
        keep = np.isfinite(chi2_dof) & np.all(np.isfinite(W), axis=(1, 2))
        if config.max_chi2_dof is not None:
            keep &= chi2_dof <= config.max_chi2_dof
        n = int(keep.sum())
        if n == 0:
            raise TrainingError(
                f"no star left for the weight posterior: none of {len(keep)} has a finite "
                f"χ²/dof ≤ {config.max_chi2_dof} under the model; check the catalog's "
                "preparation or raise EpistemicConfig.max_chi2_dof"
            )
        stars = jax.tree_util.tree_map(lambda a: jnp.asarray(a[keep]), stars)
        W = jnp.asarray(W[keep])
        with jax.enable_x64(True):  # C⁻¹ = D⁻¹ - W Wᵀ cancels: float64 keeps H ≥ 0
            _, T, _ = _whitening(
                emu.astype(jnp.float64),
                jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), stars),
                jnp.asarray(W, jnp.float64), free, reg, n, config,
            )  # fmt: skip
        # the same flat layout in the working dtype (unravel casts to its leaves' dtype)
        w0, unravel = ravel_pytree({k: emulator_arrays(emu)[k] for k in free})
        svi, guide, to_weights = _make_svi(emu, n, reg, config, free, w0, T, unravel)
        rng = np.random.default_rng(config.seed)
        batches = _minibatches(rng, n, config.batch_size, config.steps)
        key_init, key_run, key_draw = jax.random.split(jax.random.PRNGKey(config.seed), 3)
        b0 = batches[0]
        state = init_state(svi, key_init, take(stars, b0), W[b0], jnp.asarray(b0))
        per_call = min(config.steps_per_call, config.steps)
        losses = []
        bar = tqdm(total=config.steps, desc="epistemic SVI", disable=not progress, leave=False)
        for start in range(0, config.steps, per_call):
            rows = batches[start : start + per_call]
            n_steps = len(rows)
            rows = np.concatenate([rows, np.repeat(rows[-1:], per_call - n_steps, axis=0)])
            state, loss, bad = run_steps(
                svi, state, jnp.asarray(rows), jnp.asarray(n_steps, jnp.int32), (stars, W)
            )
            if int(bad) >= 0:
                bar.close()
                raise TrainingError(
                    f"the negative ELBO became non-finite at step {start + int(bad)}; "
                    "lower EpistemicConfig.lr or init_scale, or use guide='normal'"
                )
            loss = np.asarray(loss)[:n_steps]
            losses.append(loss)
            bar.update(len(loss))
            bar.set_postfix(elbo=f"{-float(loss.mean()):.6g}")
        bar.close()
        params = svi.get_params(state)
        draws = to_weights(_sample_z(key_draw, params, config))
        params = {k: np.asarray(v) for k, v in params.items()}
    losses = np.concatenate(losses)
    tail = losses[-max(1, len(losses) // 10) :]
    info = {
        "guide": config.guide,
        "rank": config.rank if config.guide == "lowrank" else None,
        "steps": config.steps,
        "batch_size": int(min(config.batch_size, n)),
        "n_stars": n,
        "n_excluded": int(len(keep) - n),
        "n_draws": config.n_draws,
        "sites": list(free),
        "final_elbo": -float(np.mean(tail)),
        "final_elbo_std": float(np.std(tail)),
        "regularization": dataclasses.asdict(reg),
    }
    return GuideFit(draws, losses, params, info)


def fit_weight_uncertainty(
    model: StellarModel, cat, config: EpistemicConfig = EpistemicConfig(), *, progress=True
) -> StellarModel:
    """A copy of ``model`` with :attr:`~StellarModel.epistemic` weight samples from SVI.

    Args:
        model: a trained :class:`~bayesdsm.model_file.StellarModel` (its weights are the
            MAP; any existing epistemic samples are replaced).
        cat: the training :class:`~bayesdsm.catalog.Catalog` after
            :func:`bayesdsm.cuts.prepare`. Stars without θ̂ or without a colour are
            left out, and bands the model lacks are ignored.
        config: settings; ``config.regularization(model.config)`` gives Eq. 15's penalties.
        progress: show a tqdm bar on stderr.

    Returns:
        The new model; ``config["epistemic"]`` holds ``config`` and ``meta["epistemic"]``
        the fit's summary (guide, rank, steps, final ELBO, stars used).
    """
    missing = [b for b in model.bands if b not in cat.bands]
    if missing:
        raise ConfigError(
            f"the catalog lacks the model's band(s) {missing}: add them (as unobserved) first"
        )
    cat = cat.select_bands(model.bands)
    stars = stardata_from_catalog(cat, np.float64)
    usable = np.asarray(cat.has_theta) & np.all(np.isfinite(cat.theta_cov), axis=(1, 2))
    usable &= np.asarray(jax.vmap(dof)(stars)) > 0
    stars = jax.tree_util.tree_map(lambda a: a[usable], stars)
    reg = config.regularization(model.config)
    fit = fit_guide(model.emulator, stars, config, reg=reg, progress=progress)
    info = {**fit.info, "n_excluded": fit.info["n_excluded"] + int((~usable).sum())}
    return dataclasses.replace(
        model,
        epistemic=fit.draws,
        config={**model.config, "epistemic": dataclasses.asdict(config)},
        meta={**model.meta, "epistemic": info},
    )


def _draw_stack(model: StellarModel, dtype) -> dict[str, jax.Array]:
    """Every sampled weight as an (S, ...) array; sites without samples keep the MAP."""
    if not model.epistemic:
        raise ConfigError(
            "this model has no epistemic weight samples: run `bayesdsm epistemic` "
            "(fit_weight_uncertainty) first"
        )
    sizes = {len(v) for v in model.epistemic.values()}
    if len(sizes) != 1 or sizes.pop() < 2:
        raise ConfigError("epistemic samples must all have the same number S ≥ 2 of draws")
    return {k: jnp.asarray(v, dtype) for k, v in model.epistemic.items()}


def predictive_spread(model: StellarModel, theta, ebv=None, *, chunk: int = 2048) -> dict:
    """Mean and standard deviation over the weight draws of B·M and R at each θ.

    Computed in float64. The standard deviation is the sample one (ddof = 1).

    Args:
        model: a :class:`~bayesdsm.model_file.StellarModel` with epistemic samples.
        theta: (N, 3) θ = (Teff [K], log g [dex], [Fe/H] [dex]); NaN rows give NaN.
        ebv: optional reddening E (scalar or (N,)): adds B(M + E R).
        chunk: stars per jitted call.

    Returns:
        ``{"BM_mean", "BM_std", "R_mean", "R_std"}`` each (N, n_bands) (B·M = M_ref and
        the colours X - ref, mag; R per band), plus ``"red_mean"``, ``"red_std"`` for
        B(M + E R) when ``ebv`` is given.
    """
    theta = np.atleast_2d(np.asarray(theta, np.float64))
    if theta.ndim != 2 or theta.shape[1] != 3:
        raise ConfigError(f"theta must have shape (N, 3), got {theta.shape}")
    n = len(theta)
    e = np.zeros(n) if ebv is None else np.broadcast_to(np.asarray(ebv, np.float64), (n,))
    with jax.enable_x64(True):
        template = model.emulator.astype(jnp.float64)
        draws = _draw_stack(model, jnp.float64)

        def one(emu, t, ee):
            bm, r = emu(t)
            return bm, r, predict_colours(emu, t, ee)

        def stats(x):  # (S, n, nb) -> mean, std over draws
            return jnp.mean(x, 0), jnp.std(x, 0, ddof=1)

        @jax.jit
        def part(t, ee):
            per_draw = jax.vmap(lambda p: batched(one)(emulator_from_params(template, p), t, ee))
            return tuple(stats(x) for x in per_draw(draws))

        (bm_m, bm_s), (r_m, r_s), (red_m, red_s) = chunked_map(part, n, chunk, theta, e)
    out = {"BM_mean": bm_m, "BM_std": bm_s, "R_mean": r_m, "R_std": r_s}
    if ebv is not None:
        out.update({"red_mean": red_m, "red_std": red_s})
    return out
