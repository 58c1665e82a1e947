"""Malformed catalogs in the layout of the released green2020 test data (issue 18).

A catalog here is a structured array with the dtype of ``green2020_test_data_dev.h5``'s
``data`` dataset (written to a file by :func:`write_green2020`, read back with the
``green2020`` preset). :func:`simulated_rows` makes one without the real file;
:func:`real_rows` cuts the real one down. :data:`CASES` maps a case name to a function
that breaks a copy of such an array (or writes a file that is not one) and returns the
expected per-row reasons: ``{row: reason}``, where the reason is the text expected in
the output's ``flags`` column. :func:`texts` and :func:`split` read that column back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_BANDS = 13
DTYPE = np.dtype(
    [
        ("atm_param", "<f4", (3,)),
        ("atm_param_cov", "<f4", (3, 3)),
        ("atm_param_p", "<f4", (3,)),
        ("atm_param_cov_p", "<f4", (3, 3)),
        ("r", "<f4"),
        ("r_err", "<f4"),
        ("mag", "<f4", (N_BANDS,)),
        ("mag_err", "<f4", (N_BANDS,)),
        ("parallax", "<f4"),
        ("parallax_err", "<f4"),
        ("atm_source", "S6"),
        ("r_source", "S7"),
    ]
)


def simulated_rows(n: int = 200, seed: int = 0) -> np.ndarray:
    """``n`` plausible stars in the green2020 layout (no real file needed)."""
    rng = np.random.default_rng(seed)
    a = np.zeros(n, DTYPE)
    a["atm_param"] = np.stack(
        [rng.uniform(4200, 6500, n), rng.uniform(2.0, 4.6, n), rng.uniform(-1.0, 0.3, n)], 1
    )
    sig = np.array([60.0, 0.1, 0.06])
    a["atm_param_cov"] = np.eye(3) * sig**2
    a["mag"] = rng.normal(13.0, 0.5, (n, N_BANDS)) - np.linspace(0, 1.5, N_BANDS)
    a["mag_err"] = rng.uniform(0.02, 0.06, (n, N_BANDS))
    miss = rng.random((n, N_BANDS)) < 0.15
    miss[:, 0] = False
    a["mag"][miss] = a["mag_err"][miss] = np.nan
    a["parallax"] = rng.uniform(0.5, 5.0, n)
    a["parallax_err"] = rng.uniform(0.02, 0.3, n)
    a["r"] = rng.uniform(0.0, 0.5, n)
    a["r_err"] = rng.uniform(0.02, 0.1, n)
    a["atm_source"] = rng.choice([b"apogee", b"galah", b"lamost"], n)
    a["r_source"] = b"sfd"
    return a


def real_rows(path, n: int = 200) -> np.ndarray:
    """The first ``n`` stars of the released test data (``green2020_test_data_dev.h5``)."""
    import h5py

    with h5py.File(path, "r") as f:
        return f["data"][:n]


def write_green2020(rows: np.ndarray, path) -> Path:
    """Write ``rows`` as the compound dataset ``data`` of an HDF5 file."""
    import h5py

    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=rows)
    return path


# ---------------------------------------------------------------- the malformed inputs
# Each breaks a copy of the rows and returns (rows, {row: reasons}): the flags expected on
# reading, each "<rule>:<column>". CUT says which of those rows the §3 preparation then
# removes (rule require_theta for a masked θ̂, require_reference_band without G).


def nan_inf_theta(a):
    a["atm_param"][3, 0] = np.nan
    a["atm_param"][7, 1] = np.inf
    a["atm_param"][8, 2] = -np.inf
    return a, {3: "theta_nonfinite:teff", 7: "theta_nonfinite:logg", 8: "theta_nonfinite:feh"}


def nonpositive_errors(a):
    a["mag_err"][5, 1] = 0.0
    a["mag_err"][6, 3] = -0.1
    a["atm_param_cov"][9, 0, 0] = -1.0
    return a, {
        5: "mag_err_nonpositive:mag_err_BP",
        6: "mag_err_nonpositive:mag_err_g",
        9: "theta_err_nonpositive:cov_teff_teff",
    }


def non_pd_theta_cov(a):
    for i in (10, 11):
        c = np.diag(np.diag(a["atm_param_cov"][i]))
        c[0, 1] = c[1, 0] = 3.0 * np.sqrt(c[0, 0] * c[1, 1])
        a["atm_param_cov"][i] = c
    return a, {10: "theta_cov_not_pd:theta_cov", 11: "theta_cov_not_pd:theta_cov"}


def no_photometry(a):
    a["mag"][12] = a["mag_err"][12] = np.nan
    return a, {12: ""}


def bad_parallaxes(a):
    a["parallax"][13] = np.inf
    a["parallax_err"][14] = 0.0
    a["parallax_err"][15] = np.nan
    a["parallax"][16] = -2.0  # as measured: kept, below the SNR limit
    return a, {
        13: "parallax_nonfinite:parallax",
        14: "parallax_err_nonpositive:parallax_err",
        15: "parallax_err_nonfinite:parallax_err",
    }


def bad_reddening_prior(a):
    a["r"][17] = np.nan
    a["r_err"][18] = 0.0
    a["r_err"][19] = np.inf
    return a, {
        17: "ebv_nonfinite:ebv",
        18: "ebv_err_nonpositive:ebv_err",
        19: "ebv_err_nonfinite:ebv_err",
    }


def missing_column(a):
    names = [n for n in a.dtype.names if n != "parallax_err"]
    out = np.zeros(len(a), [(n, a.dtype[n]) for n in names])
    for n in names:
        out[n] = a[n]
    return out, {}


def empty(a):
    return a[:0], {}


#: case -> breaker (None: the case writes a file that is not HDF5, see make_case).
CASES = {
    "not_hdf5": None,
    "empty": empty,
    "missing_column": missing_column,
    "nan_inf_theta": nan_inf_theta,
    "nonpositive_errors": nonpositive_errors,
    "non_pd_theta_cov": non_pd_theta_cov,
    "no_photometry": no_photometry,
    "bad_parallaxes": bad_parallaxes,
    "bad_reddening_prior": bad_reddening_prior,
}
#: Cases refused as a whole with exit status 2, and a word the message must contain.
REFUSED = {"not_hdf5": "HDF5", "empty": "no rows", "missing_column": "parallax_err"}
#: Rows the §3 preparation removes, by case: {row: rule}.
CUT = {
    "nan_inf_theta": {3: "require_theta", 7: "require_theta", 8: "require_theta"},
    "nonpositive_errors": {9: "require_theta"},
    "non_pd_theta_cov": {10: "require_theta", 11: "require_theta"},
    "no_photometry": {12: "require_reference_band"},
}


def make_case(name: str, rows: np.ndarray, folder) -> tuple[Path, int, dict[int, str]]:
    """Write the malformed input ``name`` to ``folder``: (path, input rows, {row: reason})."""
    path = Path(folder) / f"{name}.h5"
    if name == "not_hdf5":
        path.write_text("source_id,teff\n1,5000\n")
        return path, 0, {}
    a, reasons = CASES[name](rows.copy())
    write_green2020(a, path)
    return path, len(a), reasons


# ---------------------------------------------------------------- reading the outputs


def texts(col) -> list[str]:
    """A text column as str, ``""`` where masked (FITS and ECSV read "" back as masked)."""
    return [str(x) for x in np.ma.filled(np.ma.asarray(col).astype(str), "")]


def split(flags) -> set[str]:
    """The set of reasons in one ``flags`` value (``""`` or masked: none)."""
    if flags is np.ma.masked:
        return set()
    return set(str(flags).split(",")) - {""}
