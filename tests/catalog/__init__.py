"""Tests of bayesdsm.catalog (a package, so its basenames may repeat elsewhere in tests/)."""
