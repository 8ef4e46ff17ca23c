"""Benchmarks: ``make bench`` prints JSON lines and writes docs/benchmarks.md."""
