"""Exception and warning classes of bayesdsm.

Every error raised because of a user's data or files is a :class:`BayesDSMError`
subclass, with a message that says what was wrong and what to do (and names the file
when there is one). The command line prints it as one ``error: ...`` line and exits with
status 2 (:func:`bayesdsm.cli.main`); the readers turn the errors of the libraries below
them (h5py's OSError on a file that is not HDF5, pyarrow's on a damaged Parquet file,
...) into a :class:`CatalogError` naming the file (:func:`bayesdsm.catalog.reading_file`).
"""

from __future__ import annotations

__all__ = [
    "BayesDSMError",
    "CatalogError",
    "ConfigError",
    "ModelFileError",
    "TrainingError",
    "BayesDSMWarning",
    "ValidityWarning",
]


class BayesDSMError(Exception):
    """Base class of every error bayesdsm raises on bad input."""


class CatalogError(BayesDSMError, ValueError):
    """A catalog column, row or value breaks a rule.

    Attributes:
        column: the offending column, when one is known.
        rows: indices of offending rows (at most a few are kept), when known.
        rule: short name of the rule that was broken.
    """

    def __init__(self, message: str, *, column=None, rows=None, rule=None):
        super().__init__(message)
        self.column = column
        self.rows = None if rows is None else [int(r) for r in list(rows)[:20]]
        self.rule = rule


class ConfigError(BayesDSMError, ValueError):
    """A configuration field has an invalid value or an unknown name."""


class ModelFileError(BayesDSMError, OSError):
    """A model file is missing, truncated, tampered with, or of an unknown version."""


class TrainingError(BayesDSMError, RuntimeError):
    """Training cannot go on (too few stars, all excluded, NaN losses, ...)."""


class BayesDSMWarning(UserWarning):
    """Base class of bayesdsm's warnings."""


class ValidityWarning(BayesDSMWarning):
    """Inputs fall outside the range or validity region of a model."""
