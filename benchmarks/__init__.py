"""jobkit benchmarks: cold start, warm cost per record, AWS requests (and dollars) per job.

Run with `make bench` (`python -m benchmarks`). Not part of the test suite: every figure is a
ratio against a baseline measured in the same run, so a noisy machine moves both sides.
"""
