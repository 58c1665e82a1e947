"""Import the released Green et al. (2020) model (Keras 2.2.4 .h5) with h5py alone.

The released files (gregreen/green2020-stellar-model, Zenodo doi:10.5281/zenodo.3902382,
MIT licence) are:

* ``green2020_nn_model.h5``: weights under ``model_weights/<layer>/<layer>/{kernel:0,bias:0}``
  for ``stellar_model_hidden_1`` (3×32, sigmoid), ``stellar_model_hidden_2`` (32×32,
  sigmoid), ``BM`` (32×13, linear) and ``R`` (3×13, exponential). Keras kernels are
  (in, out); bayesdsm stores (out, in).
* ``green2020_theta_normalization.json``: ``theta_med`` and ``theta_std``.
* ``green2020_input_density.h5``: ``rho_stars`` (13, 50, 50, 50), the peak-normalised
  training density per band (band 0 is parallax, then BP..W2), on the grid in its
  attributes ``teff``, ``logg``, ``feh``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np

from bayesdsm.conventions import BANDS
from bayesdsm.emulator import Emulator, ExtinctionLayer, Linear, StellarMLP, ThetaNormalizer
from bayesdsm.errors import ModelFileError

__all__ = ["FILES", "load_green2020_emulator", "load_green2020_density"]

FILES = {
    "model": "green2020_nn_model.h5",
    "normalization": "green2020_theta_normalization.json",
    "density": "green2020_input_density.h5",
}

_HIDDEN = ("stellar_model_hidden_1", "stellar_model_hidden_2")


def _path(directory, what: str) -> Path:
    p = Path(directory) / FILES[what]
    if not p.is_file():
        raise ModelFileError(
            f"{p} not found: the folder must hold the released Green 2020 files "
            f"{sorted(FILES.values())} (gregreen/green2020-stellar-model, or Zenodo "
            "doi:10.5281/zenodo.3902382)"
        )
    return p


def _layer(f, name: str):
    try:
        g = f["model_weights"][name][name]
        return np.asarray(g["kernel:0"], np.float64), (
            np.asarray(g["bias:0"], np.float64) if "bias:0" in g else None
        )
    except KeyError as exc:
        raise ModelFileError(
            f"layer {name!r} is missing from {f.filename}: is this the released Green 2020 model?"
        ) from exc


def load_green2020_emulator(directory, dtype=jnp.float64) -> Emulator:
    """The released emulator as a bayesdsm :class:`~bayesdsm.emulator.Emulator`."""
    with open(_path(directory, "normalization")) as fh:
        norm = json.load(fh)
    with h5py.File(_path(directory, "model"), "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        acts = {
            layer["config"]["name"]: layer["config"].get("activation")
            for layer in cfg["config"]["layers"]
            if layer["class_name"] == "Dense"
        }
        if {acts.get(n) for n in _HIDDEN} != {"sigmoid"} or acts.get("R") != "exponential":
            raise ModelFileError(f"unexpected activations in {f.filename}: {acts}")
        layers = []
        for name in (*_HIDDEN, "BM"):
            k, b = _layer(f, name)
            layers.append(Linear(jnp.asarray(k.T, dtype), jnp.asarray(b, dtype)))
        kr, br = _layer(f, "R")
    return Emulator(
        normalizer=ThetaNormalizer(
            jnp.asarray(norm["theta_med"], dtype), jnp.asarray(norm["theta_std"], dtype)
        ),
        stellar=StellarMLP(tuple(layers), "sigmoid"),
        extinction=ExtinctionLayer(
            jnp.asarray(kr.T, dtype), jnp.asarray(br, dtype), jnp.zeros(len(br), dtype)
        ),
        bands=BANDS,
    )


def load_green2020_density(directory):
    """The released validity density.

    Returns:
        dict with ``grid`` = (teff, logg, feh) axes and ``density`` of shape
        (14, 50, 50, 50) in the order (G, BP, ..., W2, parallax); G, which every training
        star has, is the maximum over bands (the union of the training set).
    """
    with h5py.File(_path(directory, "density"), "r") as f:
        d = f["rho_stars"]
        rho = np.asarray(d, np.float64)
        axes = tuple(np.asarray(d.attrs[k], np.float64) for k in ("teff", "logg", "feh"))
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in d.attrs["bands"]]
    name_map = {"K_s": "Ks", "W_1": "W1", "W_2": "W2"}
    names = [name_map.get(n, n) for n in names]
    by_band = {n: rho[i] for i, n in enumerate(names)}
    g = np.max(rho, axis=0)
    dens = np.stack([g] + [by_band[b] for b in BANDS[1:]] + [by_band["parallax"]])
    return {"grid": axes, "density": dens, "bands": (*BANDS, "parallax")}
