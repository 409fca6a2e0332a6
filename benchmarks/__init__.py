"""Benchmarks: synthetic ground truth, forward timings, fit + RAFO against baselines."""
