"""Benchmarks: `make bench` runs them and writes figures to bench/*.json."""
