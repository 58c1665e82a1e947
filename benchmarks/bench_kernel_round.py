"""Cost of a PSIS round against the number of proposal components (issue 5).

The engine's last rounds draw from a kernel mixture of ~70 components (64 kernels plus
the refitted modes), its first round from ~6 (one per mode). This times
``importance_sample`` on the same stars and draws with both, in the same run, so the
ratio is the per-component overhead: drawing the components and the folded t-mixture
density (the emulator is evaluated once per draw either way).

    BAYESDSM_GREEN2020_DIR=/work/shared/green2020 python benchmarks/bench_kernel_round.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--stars", type=int, default=8)
    ap.add_argument("--draws", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_infer import green2020_setup

    from bayesdsm.infer import InferConfig, find_modes, importance_sample, simulate_stars, star_keys

    cfg = InferConfig()
    post, dev = green2020_setup(cfg)
    rng = np.random.default_rng(0)
    n = args.stars
    theta = dev[rng.integers(0, len(dev), n)]
    stars = simulate_stars(post, theta, np.full(n, 11.0), np.full(n, 0.2), rng)
    js = stars.astype(post.dtype)
    modes = find_modes(post, js, cfg.n_starts, cfg.map_steps, cfg.mode_barrier)
    keys = jnp.asarray(star_keys(0, np.arange(n)))

    def with_components(k):  # the modes repeated to k components (same shapes as the engine)
        reps = -(-k // modes.z.shape[1])
        cut = lambda a: jnp.concatenate([a] * reps, 1)[:, :k]  # noqa: E731
        return modes._replace(
            z=cut(modes.z),
            scale=cut(modes.scale),
            inv_scale=cut(modes.inv_scale),
            log_weight=cut(modes.log_weight),
        )

    out = {"stars": n, "draws": args.draws}
    for k in (modes.z.shape[1], 70):
        prop = with_components(k)
        run = lambda p=prop: jax.block_until_ready(  # noqa: E731
            importance_sample(post, js, p, keys, args.draws, 7.0, 0.0)
        )
        run()  # compile
        t = time.time()
        for _ in range(args.repeat):
            run()
        out[f"seconds_{k}_components"] = round((time.time() - t) / args.repeat, 3)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
