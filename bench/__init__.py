"""Benchmarks: every figure beside its raw-library baseline measured in the same run."""
