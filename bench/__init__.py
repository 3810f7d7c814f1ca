"""Benchmarks of the portal on the real stack (`make bench`); not part of the test suite."""
