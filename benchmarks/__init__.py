"""Benchmarks of the pipeline's speed and memory: `python -m benchmarks` runs them all (README.md)."""
