"""Benchmark scripts: they print figures, they assert nothing."""
