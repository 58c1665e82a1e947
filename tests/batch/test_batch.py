"""bayesdsm.batch: Dask runs equal the single-process run; faults, resume, bad input, HATS.

The "same results" tests use the real engine (:func:`bayesdsm.batch.infer_partition`, the
adapter of :func:`bayesdsm.infer.infer_arrays`) in its cheapest configuration (MAP +
Laplace + PSIS). The fault, resume, bad-input and HATS tests exercise the batch layer
only, so they use :func:`cheap_engine` (NumPy, no JIT, deterministic per star). Engines
defined here are imported by the Dask workers (spawned processes get this run's
``sys.path``).

CI (fast) set: one 2-worker LocalCluster run of 4 partitions through the real engine (and
an empty partition's schema), compile-once and the persistent compile cache on two fresh
1-worker clusters (:func:`jax_engine`), the resume, bad-partition, unreachable-scheduler
and HATS / LSDB tests. ``--runslow`` adds the issue's 20-partition cluster run, the SIGKILL
worker and client tests and the CLI run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bayesdsm import batch
from bayesdsm.catalog import catalog_to_table, write_catalog
from bayesdsm.emulator import init_emulator

SEED = 7
N_PARTS, PER_PART = 20, 100
N_STARS = N_PARTS * PER_PART
N_SMALL = 4  # partitions of the CI cluster run
#: The real engine, cheapest useful setting (no MCMC), with 4 posterior draws per star.
REAL = dict(
    theta_prior="flat",
    method="laplace",
    n_starts=3,
    map_steps=20,
    n_importance=256,
    n_importance_refit=(256,),
    n_importance_kernel=(512,),
    n_kernels=16,
    batch_size=128,
    keep_draws=4,
)
CHEAP = {"sleep": 0.0}
SLOW_CHEAP = {"sleep": 0.4}  # so that faults land mid-run


def cheap_engine(model, catalog, config, seed):
    """A stand-in engine without JAX: each star's row depends only on (seed, its row)."""
    from astropy.table import Table

    time.sleep(float(config["sleep"]))
    sid = np.asarray(catalog.source_id, np.int64)
    draws = np.zeros((len(sid), 3))
    for i, s in enumerate(sid):
        draws[i] = np.random.default_rng([seed, int(s)]).normal(size=3)
    obs = np.asarray(catalog.observed)
    t = Table()
    t["source_id"] = sid
    t["mag_sum"] = np.where(obs, catalog.mag, 0.0).sum(axis=1)
    t["teff_p50"] = 5000.0 + 100.0 * draws[:, 0]
    t["teff_draws"] = draws
    t["flags"] = np.where(obs.sum(axis=1) < 4, "prior_dominated", "")
    return t


#: ``"module:function"`` of :func:`cheap_engine` (this module's name: ``batch.test_batch``).
CHEAP_ENGINE = f"{__name__}:cheap_engine"


@jax.jit
def _sum_squares(mag):
    return jax.numpy.sum(mag * mag, axis=1) + 1.0


def jax_engine(model, catalog, config, seed):
    """A stand-in engine with one jitted program (one shape for equal-size partitions)."""
    mag = np.where(np.asarray(catalog.observed), catalog.mag, 0.0).astype(np.float32)
    return {"source_id": np.asarray(catalog.source_id), "mag2": np.asarray(_sum_squares(mag))}


@pytest.fixture(scope="module")
def emulator():
    return init_emulator(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def survey(emulator):
    """N_STARS simulated stars (flat-θ / volume prior, emulator truth) with Gaia-like ids."""
    from bayesdsm import infer

    post = infer.build_posterior(emulator, infer.InferConfig(theta_prior="flat"))
    rng = np.random.default_rng(3)
    theta, mu, ebv = infer.draw_prior_truth(post, N_STARS, rng)
    s = infer.simulate_stars(post, theta, mu, ebv, rng)
    obs = np.asarray(s.mask) & (rng.uniform(size=s.mask.shape) > 0.1)
    n = N_STARS
    return infer.simulated_catalog(
        emulator.bands,
        s,
        4_000_000_000_000_000_000 + 1009 * np.arange(n, dtype=np.int64),
        observed=obs,
        ra=rng.uniform(0, 360, n),
        dec=np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
    )


def _write_parts(survey, directory, n_parts):
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n_parts):
        idx = np.arange(i * PER_PART, (i + 1) * PER_PART)
        write_catalog(survey.subset(idx), directory / f"part-{i:05d}.parquet")
    return directory


@pytest.fixture(scope="module")
def catalog_dir(survey, tmp_path_factory):
    return _write_parts(survey, tmp_path_factory.mktemp("catalog"), N_PARTS)


@pytest.fixture(scope="module")
def small_dir(survey, tmp_path_factory):
    return _write_parts(survey, tmp_path_factory.mktemp("small"), N_SMALL)


@pytest.fixture(scope="module")
def cheap_reference(survey):
    """The cheap engine on the whole catalog in one call."""
    return _sorted(cheap_engine(None, survey, CHEAP, SEED).to_pandas())


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes on loopback. They inherit this process's XLA
    flags and persistent compilation cache (conftest), so they can reuse its compilations."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: 8787 may be another cluster's
            scheduler_kwargs={"dashboard": False},
            env={"OMP_NUM_THREADS": "1"},
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _sorted(df):
    return df.sort_values("source_id").reset_index(drop=True)


def assert_same_stars(got, reference):
    """Every star once, every column equal (NaN = NaN), draws included."""
    got = _sorted(got.compute()) if hasattr(got, "compute") else _sorted(got)
    assert len(got) == len(reference)
    assert got["source_id"].is_unique
    for col in reference.columns:
        a, b = got[col].to_numpy(), reference[col].to_numpy()
        if b.dtype == object and len(b) and not isinstance(b[0], str):  # list columns
            a, b = np.stack([np.asarray(x) for x in a]), np.stack([np.asarray(x) for x in b])
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b.astype(a.dtype), err_msg=col)
        else:
            np.testing.assert_array_equal(a.astype(str), b.astype(str), err_msg=col)


def _manifest(out):
    import json

    return json.loads((Path(out) / "manifest.json").read_text())


def _no_temporaries(out):
    return not list((Path(out) / "partitions").rglob(".tmp-*"))


def _run(catalog, out, **kw):
    kw = {"seed": SEED, "progress": False, **kw}
    return batch.infer_partitions(kw.pop("model"), catalog, out, **kw)


# --------------------------------------------------------------------------- real engine


def _cluster_matches_single_process(emulator, directory, n_parts, client, tmp_path):
    ref = _run(directory, tmp_path / "sync", model=emulator, config=REAL)
    assert (ref.summary.n_done, ref.summary.n_failed) == (n_parts, 0)
    reference = _sorted(ref.results.compute())
    run = _run(directory, tmp_path / "dask", model=emulator, config=REAL, scheduler=client)
    s = run.summary
    assert (s.n_done, s.n_failed, s.n_workers, s.n_stars) == (n_parts, 0, 2, n_parts * PER_PART)
    # star by star and draw by draw (the *_draws columns are in the reference)
    assert {"teff_draws", "ebv_draws", "flags", "method"} <= set(reference.columns)
    assert_same_stars(run.results, reference)
    # JAX compiles once per process, not per partition. The engine may meet a few more
    # shapes after a worker's first partition (data-dependent subsets, padded to powers of
    # two), so the check is a second pass over the same partitions: in this process it
    # builds no XLA program at all (no retracing, nothing loaded), and on the cluster it
    # compiles nothing (a shape first met by the other worker comes from the shared cache)
    sync2 = _run(directory, tmp_path / "sync2", model=emulator, config=REAL)
    assert_same_stars(sync2.results, reference)
    recs = _manifest(tmp_path / "sync2")["partitions"].values()
    assert [(r["compiles"], r["cache_hits"]) for r in recs] == [(0, 0)] * n_parts
    dask2 = _run(directory, tmp_path / "dask2", model=emulator, config=REAL, scheduler=client)
    assert dask2.summary.n_done == n_parts
    assert sum(dask2.summary.compiles.values()) == 0, dask2.summary.compiles
    return reference


def test_local_cluster_matches_single_process(emulator, survey, small_dir, client, tmp_path):
    from bayesdsm.infer import InferConfig, infer_catalog

    reference = _cluster_matches_single_process(emulator, small_dir, N_SMALL, client, tmp_path)
    # the adapter returns what the engine returns for the same stars and seed
    fields = {k: v for k, v in REAL.items() if k != "keep_draws"}
    direct = infer_catalog(
        emulator, survey.subset(np.arange(PER_PART)), InferConfig(**fields, seed=SEED)
    ).to_pandas()
    got = reference[reference["source_id"].isin(direct["source_id"])]
    assert_same_stars(got, _sorted(direct.drop(columns=["row"])))
    # re-running does nothing
    again = _run(small_dir, tmp_path / "dask", model=emulator, config=REAL, scheduler="sync")
    assert (again.summary.n_done, again.summary.n_skipped) == (0, N_SMALL)


def test_empty_partition_has_the_engines_schema(emulator, survey, tmp_path):
    import pyarrow.parquet as pq

    src = tmp_path / "cat"
    src.mkdir()
    write_catalog(survey.subset(np.arange(PER_PART)), src / "part-00000.parquet")
    write_catalog(survey.subset(np.arange(0)), src / "part-00001.parquet")
    run = _run(src, tmp_path / "out", model=emulator, config=REAL)
    assert (run.summary.n_done, run.summary.n_failed, run.summary.n_stars) == (2, 0, PER_PART)
    full, empty = (
        pq.read_schema(tmp_path / "out" / "partitions" / f"part-0000{i}.parquet").remove_metadata()
        for i in (0, 1)
    )
    assert empty.names == full.names and "teff_p50" in empty.names
    assert empty.equals(full), f"{empty}\n!=\n{full}"
    assert len(run.results.compute()) == PER_PART  # the two files concatenate


def test_empty_partition_of_a_k2_model_has_the_engines_schema(emulator, survey, tmp_path):
    """K = 2 (issue 20): ξ's summaries and draws in every partition, an empty one too."""
    import pyarrow.parquet as pq

    from bayesdsm.infer.testing import variation_bias, with_variation

    emu2 = with_variation(emulator, r1_bias=variation_bias(emulator.n_bands, 0.1))
    src = tmp_path / "cat"
    src.mkdir()
    write_catalog(survey.subset(np.arange(20)), src / "part-00000.parquet")
    write_catalog(survey.subset(np.arange(0)), src / "part-00001.parquet")
    run = _run(src, tmp_path / "out", model=emu2, config=REAL)
    assert (run.summary.n_done, run.summary.n_failed, run.summary.n_stars) == (2, 0, 20)
    full, empty = (
        pq.read_schema(tmp_path / "out" / "partitions" / f"part-0000{i}.parquet").remove_metadata()
        for i in (0, 1)
    )
    assert {"xi_p16", "xi_p50", "xi_p84", "xi_draws"} <= set(full.names)
    assert empty.equals(full), f"{empty}\n!=\n{full}"
    assert np.all(np.isfinite(run.results.compute()["xi_p50"]))


@pytest.mark.slow
def test_local_cluster_matches_single_process_20_partitions(
    emulator, catalog_dir, client, tmp_path
):
    _cluster_matches_single_process(emulator, catalog_dir, N_PARTS, client, tmp_path)


@pytest.mark.slow
def test_cli_infer_on_a_directory(emulator, small_dir, tmp_path, capsys):
    from bayesdsm.cli import main
    from bayesdsm.model_file import StellarModel, save_model

    model = save_model(StellarModel(emulator=emulator), tmp_path / "model.bdsm")
    out = tmp_path / "out"
    argv = ["infer", str(model), str(small_dir), "--out", str(out), "--method", "laplace"]
    argv += ["--theta-prior", "flat", "--scheduler", "sync", "--no-progress", "--chunk", "128"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"{N_SMALL} done" in text and f"stars: {N_SMALL * PER_PART} done" in text
    assert len(list((out / "partitions").glob("*.parquet"))) == N_SMALL


def test_cli_unreachable_scheduler(small_dir, tmp_path, capsys):
    from bayesdsm.cli import main

    pytest.importorskip("distributed")
    argv = ["infer", str(tmp_path / "model"), str(small_dir), "--out", str(tmp_path / "out")]
    (tmp_path / "model").write_bytes(b"not loaded before the scheduler is reached")
    status = main([*argv, "--scheduler", "127.0.0.1:9", "--connect-timeout", "1"])
    assert status == 2
    err = capsys.readouterr().err
    assert "could not reach the Dask scheduler at tcp://127.0.0.1:9 within 1 s" in err


# --------------------------------------------------------------------------- batch layer


def test_resume_skips_done_and_adopts_orphans(emulator, catalog_dir, cheap_reference, tmp_path):
    import json

    out = tmp_path / "out"
    first = _run(catalog_dir, out, model=emulator, config=CHEAP, partition_fn=CHEAP_ENGINE)
    assert (first.summary.n_done, first.summary.n_stars) == (N_PARTS, N_STARS)
    assert_same_stars(first.results, cheap_reference)
    # an interrupted run: two result files missing, one file finished after the client died
    (out / "partitions" / "part-00004.parquet").unlink()
    (out / "partitions" / "part-00013.parquet").unlink()
    m = _manifest(out)
    del m["partitions"]["part-00007"]
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "partitions" / ".tmp-0123-part-00009.parquet").write_bytes(b"partial")
    again = _run(catalog_dir, out, model=emulator, config=CHEAP, partition_fn=CHEAP_ENGINE)
    s = again.summary
    assert (s.n_done, s.n_skipped, s.n_failed, s.n_stars) == (2, N_PARTS - 2, 0, 2 * PER_PART)
    assert _manifest(out)["partitions"]["part-00007"]["adopted"]
    assert _no_temporaries(out)
    assert_same_stars(again.results, cheap_reference)
    # the output directory belongs to one run: another seed is refused
    with pytest.raises(batch.BatchError, match="seed"):
        _run(
            catalog_dir, out, model=emulator, config=CHEAP, partition_fn=CHEAP_ENGINE, seed=SEED + 1
        )


def test_bad_partitions_fail_alone(emulator, survey, catalog_dir, tmp_path, capsys):
    import shutil

    import pyarrow.parquet as pq

    src = tmp_path / "cat"
    shutil.copytree(catalog_dir, src)
    (src / "part-00003.parquet").write_bytes(b"PAR1 this is not a parquet file")
    column = f"mag_err_{survey.bands[0]}"
    t = pq.read_table(src / "part-00011.parquet")
    pq.write_table(t.drop_columns([column]), src / "part-00011.parquet")
    args = type("Args", (), {"scheduler": "sync", "connect_timeout": 1.0, "no_progress": True})
    status = batch.run_cli(
        emulator,
        src,
        tmp_path / "out",
        args,
        config=CHEAP,
        seed=SEED,
        partition_fn=CHEAP_ENGINE,
    )
    assert status == 1
    text = capsys.readouterr().out
    assert f"{N_PARTS - 2} done" in text and "2 failed" in text
    lines = {ln.split(":")[0]: ln for ln in text.splitlines() if ln.startswith("FAILED")}
    assert set(lines) == {"FAILED part-00003", "FAILED part-00011"}
    assert "Parquet" in lines["FAILED part-00003"]  # the reader's reason, not just a name
    assert "CatalogError" in lines["FAILED part-00011"] and column in lines["FAILED part-00011"]
    m = _manifest(tmp_path / "out")["partitions"]
    assert sum(r["status"] == "done" for r in m.values()) == N_PARTS - 2


def test_unreachable_scheduler_fails_fast(monkeypatch):
    distributed = pytest.importorskip("distributed")
    with pytest.raises(batch.BatchError, match="could not reach the Dask scheduler.*within 1.5 s"):
        batch.connect("tcp://127.0.0.1:9", timeout=1.5)
    # "within seconds": the timeout reaches the client (its default is 30 s), no clock here
    seen = {}

    class Refused:
        def __init__(self, address, **kwargs):
            seen.update(kwargs, address=address)
            raise OSError("refused")

    monkeypatch.setattr(distributed, "Client", Refused)
    with pytest.raises(batch.BatchError, match="127.0.0.1:8786"):
        batch.connect("127.0.0.1:8786", timeout=2.5)
    assert seen == {"address": "tcp://127.0.0.1:8786", "timeout": 2.5}


def test_missing_directory_says_so(emulator, tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        batch.infer_partitions(emulator, tmp_path, tmp_path / "out")


def test_engine_config():
    from bayesdsm.infer import InferConfig

    cfg, keep = batch.engine_config({"method": "laplace", "keep_draws": 3, "seed": 1}, seed=5)
    assert (cfg.method, cfg.seed, keep) == ("laplace", 5, 3)
    assert batch.engine_config(None, 2) == (dataclasses.replace(InferConfig(), seed=2), 0)
    with pytest.raises(TypeError, match="InferConfig"):
        batch.engine_config("laplace")


def test_workers_compile_once_and_reuse_the_persistent_cache(emulator, small_dir, tmp_path):
    pytest.importorskip("distributed")
    cache = tmp_path / "xla"
    counts = []
    for i in range(2):  # two fresh clusters (new worker processes), one cache directory
        out = tmp_path / f"out{i}"
        run = _run(
            small_dir,
            out,
            model=emulator,
            config=CHEAP,
            scheduler="local:1",
            partition_fn=f"{__name__}:jax_engine",
            compile_cache=cache,
            dashboard=False,
        )
        assert (run.summary.n_done, run.summary.n_failed) == (N_SMALL, 0)
        recs = list(_manifest(out)["partitions"].values())
        assert len({r["worker"] for r in recs}) == 1
        counts.append(([r["compiles"] for r in recs], [r["cache_hits"] for r in recs]))
    (compiles1, hits1), (compiles2, hits2) = counts
    # first cluster, empty cache: one partition (the worker's first) compiles, no other does
    assert sum(c > 0 for c in compiles1) == 1 and sum(hits1) == 0, counts
    assert any(cache.rglob("*"))
    # second cluster: its new worker process compiles nothing, it loads from the cache
    assert sum(compiles2) == 0 and sum(hits2) >= 1, counts
    a, b = (_sorted(batch.open_results(tmp_path / f"out{i}").compute()) for i in (0, 1))
    np.testing.assert_array_equal(a["mag2"].to_numpy(), b["mag2"].to_numpy())


# lsdb/nested-pandas call DataFrame.set_index(inplace=True), deprecated in pandas 3.1: not ours.
@pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")
def test_hats_catalog_runs_through_same_path(emulator, survey, cheap_reference, tmp_path):
    lsdb = pytest.importorskip("lsdb", reason="lsdb not installed (pip install bayesdsm[dask])")
    df = catalog_to_table(survey).to_pandas()
    hats_dir = tmp_path / "hats"
    lsdb.from_dataframe(
        df, ra_column="ra", dec_column="dec", highest_order=3, partition_rows=600
    ).write_catalog(hats_dir, progress_bar=False)
    parts = batch.discover_partitions(hats_dir)
    assert len(parts) > 1 and all("Norder=" in p.name for p in parts)
    out = tmp_path / "out"
    run = _run(hats_dir, out, model=emulator, config=CHEAP, partition_fn=CHEAP_ENGINE)
    assert run.summary.n_failed == 0 and run.summary.n_stars == N_STARS
    assert_same_stars(run.results[cheap_reference.columns.tolist()], cheap_reference)
    joined = batch.open_results_lsdb(out).compute()
    assert len(joined) == N_STARS and {"teff_p50", f"mag_{survey.bands[0]}"} <= set(joined.columns)
    np.testing.assert_array_equal(
        _sorted(joined)["teff_p50"].to_numpy(), cheap_reference["teff_p50"].to_numpy()
    )
    # an LSDB catalog object (not a directory) is staged as HATS and runs the same way
    staged = _run(
        lsdb.read_hats(hats_dir),
        tmp_path / "out2",
        model=emulator,
        config=CHEAP,
        partition_fn=CHEAP_ENGINE,
    )
    assert staged.summary.n_done == len(parts) and staged.summary.n_stars == N_STARS
    assert_same_stars(staged.results[cheap_reference.columns.tolist()], cheap_reference)


# --------------------------------------------------------------------------- faults (slow)


@pytest.mark.slow
def test_worker_killed_mid_run(emulator, catalog_dir, cheap_reference, client, tmp_path):
    out = tmp_path / "out"
    pids = sorted(client.run(os.getpid).values())
    done_dir = out / "partitions"

    at_kill = []

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(done_dir.glob("*.parquet"))) < 3:
            time.sleep(0.05)
        at_kill.append(len(list(done_dir.glob("*.parquet"))))
        os.kill(pids[0], signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run = _run(
        catalog_dir,
        out,
        model=emulator,
        config=SLOW_CHEAP,
        scheduler=client,
        partition_fn=CHEAP_ENGINE,
    )
    t.join(5)
    assert pids[0] not in client.run(os.getpid).values()  # the worker did die
    assert 3 <= at_kill[0] < N_PARTS  # mid-run
    assert (run.summary.n_done, run.summary.n_failed) == (N_PARTS, 0)
    assert _no_temporaries(out)
    assert_same_stars(run.results, cheap_reference)  # every star exactly once, same values


@pytest.mark.slow
def test_client_killed_then_rerun_finishes_only_missing(
    emulator, catalog_dir, cheap_reference, client, tmp_path
):
    """The client (a separate process, connected to the cluster by address) is SIGKILLed
    mid-run; the cluster lives on. A new client finishes only the missing partitions."""
    out = tmp_path / "out"
    address = client.scheduler.address
    script = (
        "import jax, sys; from bayesdsm import batch; from bayesdsm.emulator import init_emulator\n"
        f"batch.infer_partitions(init_emulator(jax.random.PRNGKey(0)), {str(catalog_dir)!r}, "
        f"{str(out)!r}, scheduler={address!r}, config={SLOW_CHEAP!r}, seed={SEED}, "
        f"partition_fn={CHEAP_ENGINE!r}, progress=False)\n"
    )
    tests = str(Path(__file__).parents[1])  # where this test package can be imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(out.glob("partitions/*.parquet"))) < 4:
            assert proc.poll() is None, "the client finished or died before it was killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {p: p.stat().st_mtime_ns for p in out.glob("partitions/*.parquet")}
    assert 4 <= len(before) < N_PARTS
    run = _run(
        catalog_dir,
        out,
        model=emulator,
        config=SLOW_CHEAP,
        scheduler=client,
        partition_fn=CHEAP_ENGINE,
    )
    s = run.summary
    # tasks the workers were running when the client died may still land (and are adopted)
    assert s.n_failed == 0 and s.n_skipped + s.n_done == N_PARTS
    assert s.n_skipped >= len(before) and s.n_done >= 1
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # not redone
    assert _no_temporaries(out)
    assert_same_stars(run.results, cheap_reference)
