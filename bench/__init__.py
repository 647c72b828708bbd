"""Benchmarks: quality, scoring speed, ingestion, latency and memory; run each as ``python -m bench.<name>``."""
