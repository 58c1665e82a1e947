"""The Dask worker plugin of a batch run (imported only when a Dask client is used)."""

from __future__ import annotations

from distributed import WorkerPlugin

from bayesdsm.batch._cache import configure_compile_cache

__all__ = ["CompileCachePlugin", "PLUGIN_NAME"]

PLUGIN_NAME = "bayesdsm-compile-cache"


class CompileCachePlugin(WorkerPlugin):
    """Points every worker process at a persistent XLA compilation cache.

    ``setup`` runs on each worker when the plugin is registered and on every worker that
    joins later (a nanny's restart after a crash included), before its first task.

    Attributes:
        directory: the cache directory, or ``""`` for each worker's default
            (:func:`~bayesdsm.batch._cache.default_cache_dir`).
    """

    idempotent = False  # re-registering with another directory replaces it

    def __init__(self, directory: str = ""):
        self.directory = directory

    def setup(self, worker):
        configure_compile_cache(self.directory or None)
