"""Tests of bayesdsm.train (a package, so its basenames may repeat elsewhere in tests/)."""
