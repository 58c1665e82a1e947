"""bayesdsm.batch: Dask runs equal the single-process run; faults, resume, bad input, HATS.

The engine here is :func:`bayesdsm.batch.standin_partition` (cheap, per-star keyed, same
signature as the real engine). Engines defined in this module are imported by the Dask
workers (spawned processes get this test run's ``sys.path``).
"""

from __future__ import annotations

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

ENGINE = "bayesdsm.batch:standin_partition"
CFG = {"n_draws": 16, "batch_size": 16, "n_keep": 3}
SEED = 7
N_STARS, N_PARTS = 200, 20


def slow_engine(model, catalog, config, seed):
    """The stand-in, 0.4 s slower per partition (so that faults land mid-run)."""
    time.sleep(0.4)
    return batch.standin_partition(model, catalog, config, seed)


@pytest.fixture(scope="module")
def emulator():
    return init_emulator(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def survey(emulator):
    from bayesdsm.simulate import EmulatorTruth, SimConfig, simulate_survey

    cfg = SimConfig(n_stars=N_STARS, seed=3, population_source="parametric", overlap_fraction=0.0)
    cat = simulate_survey(cfg, EmulatorTruth(emulator))
    assert len(np.unique(cat.source_id)) == len(cat)
    return cat


@pytest.fixture(scope="module")
def catalog_dir(survey, tmp_path_factory):
    d = tmp_path_factory.mktemp("catalog")
    for i, idx in enumerate(np.array_split(np.arange(len(survey)), N_PARTS)):
        write_catalog(survey.subset(idx), d / f"part-{i:05d}.parquet")
    return d


@pytest.fixture(scope="module")
def reference(emulator, survey):
    """The single-process answer: the whole catalog through the engine in one call."""
    return _sorted(batch.standin_partition(emulator, survey, CFG, SEED).to_pandas())


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env=dict(batch._driver.LOCAL_WORKER_ENV),
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _sorted(df):
    return df.sort_values("source_id").reset_index(drop=True)


def assert_same_stars(results, reference):
    got = _sorted(results.compute())
    assert len(got) == len(reference)
    assert got["source_id"].is_unique
    for col in reference.columns:
        a, b = got[col].to_numpy(), reference[col].to_numpy()
        if b.dtype == object:  # draws: fixed-size list columns
            a, b = np.stack([np.asarray(x) for x in a]), np.stack([np.asarray(x) for x in b])
        np.testing.assert_array_equal(a, b, err_msg=col)


def _no_temporaries(out):
    return not list((Path(out) / "partitions").rglob(".tmp-*"))


def test_sync_run_matches_single_call(emulator, catalog_dir, reference, tmp_path):
    run = batch.infer_partitions(
        emulator,
        catalog_dir,
        tmp_path / "out",
        config=CFG,
        seed=SEED,
        partition_fn=ENGINE,
        progress=False,
    )
    s = run.summary
    assert (s.n_done, s.n_failed, s.n_stars) == (N_PARTS, 0, N_STARS)
    assert_same_stars(run.results, reference)
    # draw by draw too: the draws columns are part of reference.columns
    assert {"teff_draws", "logg_draws", "feh_draws"} <= set(reference.columns)
    # re-running does nothing
    again = batch.infer_partitions(
        emulator,
        catalog_dir,
        tmp_path / "out",
        config=CFG,
        seed=SEED,
        partition_fn=ENGINE,
        progress=False,
    )
    assert (again.summary.n_done, again.summary.n_skipped) == (0, N_PARTS)


def test_other_seed_in_same_output_is_refused(emulator, catalog_dir, tmp_path):
    out = tmp_path / "out"
    batch.infer_partitions(
        emulator, catalog_dir, out, config=CFG, seed=SEED, partition_fn=ENGINE, progress=False
    )
    with pytest.raises(batch.BatchError, match="seed"):
        batch.infer_partitions(
            emulator,
            catalog_dir,
            out,
            config=CFG,
            seed=SEED + 1,
            partition_fn=ENGINE,
            progress=False,
        )


def test_local_cluster_matches_single_process(emulator, catalog_dir, reference, client, tmp_path):
    run = batch.infer_partitions(
        emulator,
        catalog_dir,
        tmp_path / "out",
        scheduler=client,
        config=CFG,
        seed=SEED,
        partition_fn=ENGINE,
        progress=False,
    )
    s = run.summary
    assert (s.n_done, s.n_failed, s.n_workers) == (N_PARTS, 0, 2)
    assert_same_stars(run.results, reference)
    # JAX compiles once per worker: only each worker's first partition compiles
    records = _manifest(tmp_path / "out")["partitions"]
    by_worker: dict[str, list] = {}
    for name in sorted(records):
        by_worker.setdefault(records[name]["worker"], []).append(records[name]["compiles"])
    assert all(all(c == 0 for c in counts[1:]) for counts in by_worker.values()), by_worker


def test_worker_killed_mid_run(emulator, catalog_dir, reference, client, tmp_path):
    out = tmp_path / "out"
    pids = sorted(client.run(os.getpid).values())
    done_dir = out / "partitions"

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(done_dir.glob("*.parquet"))) < 3:
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run = batch.infer_partitions(
        emulator,
        catalog_dir,
        out,
        scheduler=client,
        config=CFG,
        seed=SEED,
        partition_fn=f"{__name__}:slow_engine",
        progress=False,
    )
    t.join(5)
    assert pids[0] not in client.run(os.getpid).values()  # the worker did die
    assert (run.summary.n_done, run.summary.n_failed) == (N_PARTS, 0)
    assert _no_temporaries(out)
    assert_same_stars(run.results, reference)  # every star exactly once, same values


def _manifest(out):
    import json

    return json.loads((Path(out) / "manifest.json").read_text())


def test_client_killed_then_rerun_finishes_only_missing(emulator, catalog_dir, reference, tmp_path):
    out = tmp_path / "out"
    script = (
        "import jax, sys; from bayesdsm import batch; from bayesdsm.emulator import init_emulator\n"
        f"batch.infer_partitions(init_emulator(jax.random.PRNGKey(0)), {str(catalog_dir)!r}, "
        f"{str(out)!r}, config={CFG!r}, seed={SEED}, partition_fn='test_batch:slow_engine', "
        "progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(out.glob("partitions/*.parquet"))) < 4:
            assert proc.poll() is None, "the client finished or died before it was killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = len(list(out.glob("partitions/*.parquet")))
    assert 4 <= finished < N_PARTS
    run = batch.infer_partitions(
        emulator,
        catalog_dir,
        out,
        config=CFG,
        seed=SEED,
        partition_fn="test_batch:slow_engine",
        progress=False,
    )
    s = run.summary
    assert s.n_skipped == finished and s.n_done == N_PARTS - finished and s.n_failed == 0
    assert_same_stars(run.results, reference)


def test_bad_partitions_fail_alone(emulator, catalog_dir, tmp_path, capsys):
    import shutil

    import pyarrow.parquet as pq

    src = tmp_path / "cat"
    shutil.copytree(catalog_dir, src)
    (src / "part-00003.parquet").write_bytes(b"PAR1 this is not a parquet file")
    t = pq.read_table(src / "part-00011.parquet")
    pq.write_table(t.drop_columns(["mag_err_G"]), src / "part-00011.parquet")
    args = type("Args", (), {"scheduler": "sync", "connect_timeout": 1.0, "no_progress": True})
    status = batch.run_cli(
        emulator, src, tmp_path / "out", args, config=CFG, seed=SEED, partition_fn=ENGINE
    )
    assert status == 1
    text = capsys.readouterr().out
    assert "18 done" in text and "2 failed" in text
    assert "FAILED part-00003" in text and "FAILED part-00011: CatalogError" in text
    assert "mag_err_G" in text
    m = _manifest(tmp_path / "out")["partitions"]
    assert sum(r["status"] == "done" for r in m.values()) == N_PARTS - 2


def test_unreachable_scheduler_fails_fast():
    pytest.importorskip("distributed")
    t0 = time.monotonic()
    with pytest.raises(batch.BatchError, match="could not reach the Dask scheduler"):
        batch.connect("tcp://127.0.0.1:9", timeout=1.5)
    assert time.monotonic() - t0 < 10


def test_missing_directory_says_so(emulator, tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        batch.infer_partitions(emulator, tmp_path, tmp_path / "out", partition_fn=ENGINE)


# lsdb/nested-pandas call DataFrame.set_index(inplace=True), deprecated in pandas 3.1: not ours.
@pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")
def test_hats_catalog_runs_through_same_path(emulator, survey, reference, tmp_path):
    lsdb = pytest.importorskip("lsdb", reason="lsdb not installed (pip install bayesdsm[dask])")
    df = catalog_to_table(survey).to_pandas()
    hats_dir = tmp_path / "hats"
    lsdb.from_dataframe(
        df, ra_column="ra", dec_column="dec", highest_order=3, partition_rows=60
    ).write_catalog(hats_dir, progress_bar=False)
    parts = batch.discover_partitions(hats_dir)
    assert len(parts) > 1 and all("Norder=" in p.name for p in parts)
    out = tmp_path / "out"
    run = batch.infer_partitions(
        emulator, hats_dir, out, config=CFG, seed=SEED, partition_fn=ENGINE, progress=False
    )
    assert run.summary.n_failed == 0 and run.summary.n_stars == N_STARS
    assert_same_stars(run.results[reference.columns.tolist()], reference)
    joined = batch.open_results_lsdb(out).compute()
    assert len(joined) == N_STARS and {"teff_p50", "mag_G"} <= set(joined.columns)
    np.testing.assert_array_equal(
        _sorted(joined)["teff_p50"].to_numpy(), reference["teff_p50"].to_numpy()
    )
