"""Benchmarks: figures printed for humans, not pass/fail tests."""
