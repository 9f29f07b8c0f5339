"""Benchmarks: scripts that measure and report (not tests)."""
