"""A persistent XLA compilation cache for worker processes.

Without it every new worker process compiles the engine from scratch (about a hundred
XLA programs: tens of seconds per worker, minutes on a loaded machine). With it, the
first worker on a machine compiles and writes the executables to a directory; every
later worker process, of this run or a later one, loads them instead.

:func:`configure_compile_cache` sets JAX's options in the calling process. It changes
global JAX state, so the batch layer calls it only in Dask worker processes (through the
worker plugin of :mod:`bayesdsm.batch._plugin`), and in this process only when the
caller names a directory. The cache is trusted code: keep it in a directory only you
can write to (JAX's own warning).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir", "configure_compile_cache", "resolve_cache_arg"]

#: Environment variable naming the cache directory (read on the worker).
CACHE_ENV = "BAYESDSM_COMPILE_CACHE"


def default_cache_dir() -> Path:
    """The cache directory of this process when none is given.

    In order: ``$BAYESDSM_COMPILE_CACHE``; the directory JAX is already configured with
    (``jax_compilation_cache_dir``, e.g. from ``$JAX_COMPILATION_CACHE_DIR``);
    ``$XDG_CACHE_HOME/bayesdsm/jax`` (``~/.cache/bayesdsm/jax``).
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "bayesdsm" / "jax"


def configure_compile_cache(directory=None, *, min_compile_secs: float = 0.0) -> str:
    """Make this process read and write JAX's persistent compilation cache in ``directory``.

    Args:
        directory: the cache directory (created; ``~`` expanded here, in the process that
            uses it); None for :func:`default_cache_dir`.
        min_compile_secs: programs that compiled faster than this are not written (JAX's
            default is 1 s, which would skip most of the engine's small programs).

    Returns:
        The directory in use.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    path = Path(directory).expanduser() if directory else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size limit
    if previous and previous != str(path):
        compilation_cache.reset_cache()  # an already opened cache would keep the old dir
    return str(path)


def resolve_cache_arg(compile_cache):
    """The driver's ``compile_cache`` argument as shipped to workers.

    Returns:
        None (no cache), ``""`` (each worker's :func:`default_cache_dir`) or a directory
        string (absolute unless it starts with ``~``, which each worker expands).
    """
    if compile_cache is None or compile_cache is False:
        return None
    if compile_cache is True:
        return ""
    text = os.fspath(compile_cache)
    return text if text.startswith("~") else os.path.abspath(text)
