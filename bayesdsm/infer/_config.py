"""Configuration of per-star inference (:class:`InferConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from bayesdsm.errors import ConfigError

__all__ = ["InferConfig"]


@dataclass(frozen=True)
class InferConfig:
    """Settings of :func:`bayesdsm.infer.infer_catalog` (JSON round trip via
    :mod:`bayesdsm.config`).

    Model and priors:
        prior: ``"volume"`` (direction-free, p(d) ∝ d² e^(−d/L)) or ``"galactic"`` (brutus
            thin/thick disk + halo with [Fe/H] per component, :data:`bayesdsm.galaxy.BRUTUS`;
            needs (l, b)).
        theta_prior: ``"density"`` (the model's smoothed training density) or ``"flat"``.
        volume_length_pc: L of the volume prior [pc].
        density_floor, density_smooth, density_halo: see
            :meth:`bayesdsm.infer.ThetaDensityPrior.from_grid`.
        ebv_max: upper edge of the flat reddening prior [mag] (stars without Ê, σ_E).
        sigma_emu: per-band model error added in quadrature to σ_m [mag]: one number,
            or one per band.
        parallax_zero_point: subtracted from ϖ̂ [mas] (e.g. −0.017 for Gaia EDR3).
        use_parallax: use every finite parallax (negative ones too); False ignores them.
        min_bands: fewer observed bands flags the star ``prior_dominated``.
    Sampling:
        method: ``"auto"`` (MAP+Laplace → PSIS rounds → whitened HMC → longer HMC →
            NUTS fallbacks; under ``theta_prior="flat"`` it runs as ``"hmc"``, whose
            [Fe/H] intervals are calibrated there and PSIS's are not),
            ``"laplace"`` (MAP+Laplace+PSIS rounds only, no MCMC), ``"hmc"`` (whitened HMC
            for every star, longer HMC and NUTS fallbacks) or ``"nuts"`` (NUTS for every
            star).
        n_starts: multi-start MAP starts (dwarf and giant branches; at most 8).
        map_steps: damped-Newton iterations per start.
        mode_barrier: local maxima joined by a straight path whose ln p dips less than
            this [nats] below the lower one are one mode group (masses add up; see
            :mod:`bayesdsm.infer._laplace`).
        n_importance: Laplace-mixture proposal draws per star for PSIS (first round).
        pareto_k_first: the first round's k̂ bar. A star whose Laplace-mixture weights
            meet the bar with ``pareto_k_first`` < k̂ ≤ ``pareto_k_max`` is held for one
            refitted round, whose draws stand if they meet the bar (else the first
            round's do): weights that heavy-tailed mark a proposal that has missed part
            of the posterior's tails, and such stars' intervals covered the truth least
            often.
        n_importance_refit: draws of each further PSIS round, from a proposal refitted
            to the previous round's weighted draws (only stars still failing the bar).
        refit_inflate: covariance inflation of the refitted proposal.
        n_importance_kernel: draws of each PSIS round after those, from a defensive
            mixture of ``n_kernels`` t kernels on the previous round's weighted draws
            (adaptive importance sampling for non-Gaussian posteriors; only stars still
            failing the bar).
        n_importance_mcmc: draws of the PSIS round given to a star whose MCMC tier failed
            the bar, from a kernel mixture on its chains' draws (0: none); a star that
            passes it meets the bar (``method`` ``"<tier>+psis"``) and goes no further.
        n_chains, n_warmup, n_samples, n_leapfrog: whitened-HMC settings (per star).
        escalate: stars that fail the HMC bar and have a single mode carrying weight
            go on to a longer HMC run (``long_*``), then NUTS (``nuts_*``), then a
            second NUTS run whose chains are pooled with the first's (method
            ``nuts_more``); without it they stop after HMC. Stars with ≥ 2 weighted
            modes are flagged ``multimodal`` instead; so is a star that fails every tier
            with its chains in ≥ 2 mode groups (modes found from the chains' ends), and
            any other star that fails is flagged ``not_converged``.
        long_warmup, long_samples, long_leapfrog: the longer HMC run.
        nuts_warmup, nuts_samples, nuts_max_tree_depth: NUTS settings.
        ess_min, rhat_max, pareto_k_max: the convergence bar.
        min_mode_weight: mode groups below this posterior mass are dropped; a star with ≥ 2
            modes above it is flagged ``multimodal``.
        chi2_max: χ²/dof above this at the MAP flags ``chi2``.
        validity_min: training density below this at the MAP flags ``outside_validity``.
        dtype: ``"float32"`` or ``"float64"``.
        seed: global seed; per-star keys are derived from it and the star's id.
        batch_size: stars per vectorised batch (memory); chunk_size: stars per output file.
    """

    prior: str = "volume"
    theta_prior: str = "density"
    volume_length_pc: float = 1350.0
    density_floor: float = 1e-3
    density_smooth: float = 1.0
    density_halo: float = 4.0
    ebv_max: float = 5.0
    sigma_emu: float | tuple[float, ...] = 0.0
    parallax_zero_point: float = 0.0
    use_parallax: bool = True
    min_bands: int = 4
    method: str = "auto"
    n_starts: int = 6
    map_steps: int = 25
    mode_barrier: float = 1.0
    n_importance: int = 1024
    pareto_k_first: float = 0.5
    n_importance_refit: tuple[int, ...] = (1024, 4096)
    refit_inflate: float = 1.5
    n_importance_kernel: tuple[int, ...] = (8192, 16384)
    n_kernels: int = 64
    n_importance_mcmc: int = 16384
    n_chains: int = 4
    n_warmup: int = 150
    n_samples: int = 400
    n_leapfrog: int = 5
    escalate: bool = True
    long_warmup: int = 300
    long_samples: int = 1200
    long_leapfrog: int = 8
    nuts_warmup: int = 400
    nuts_samples: int = 600
    nuts_max_tree_depth: int = 6
    ess_min: float = 200.0
    rhat_max: float = 1.01
    pareto_k_max: float = 0.7
    min_mode_weight: float = 0.02
    chi2_max: float = 5.0
    validity_min: float = 1e-3
    dtype: str = "float32"
    seed: int = 0
    batch_size: int = 2048
    chunk_size: int = 2048

    def __post_init__(self):
        choices = {
            "prior": ("volume", "galactic"),
            "theta_prior": ("density", "flat"),
            "method": ("auto", "laplace", "hmc", "nuts"),
            "dtype": ("float32", "float64"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"InferConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if not 1 <= self.n_starts <= 8:
            raise ConfigError(f"InferConfig.n_starts must be in 1..8, got {self.n_starts}")
        if self.n_chains < 2:
            raise ConfigError("InferConfig.n_chains must be >= 2 (split R-hat needs chains)")
        for name in ("n_importance_refit", "n_importance_kernel"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if isinstance(self.sigma_emu, list | tuple):
            object.__setattr__(self, "sigma_emu", tuple(float(s) for s in self.sigma_emu))

    @property
    def engine(self) -> str:
        """The engine this config runs: ``method``, except that ``"auto"`` under the flat θ
        prior runs as ``"hmc"``. There, PSIS intervals of [Fe/H] (which the photometry
        barely constrains, so its posterior fills the prior's box and runs into the soft
        walls) covered the truth 0.920 of the time at 95% and 0.647 at 68% (calibration
        seed 11), against 0.932 and 0.654 with the MCMC tiers (BENCHMARKS.md, session 6)."""
        if self.method == "auto" and self.theta_prior == "flat":
            return "hmc"
        return self.method
