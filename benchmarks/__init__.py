"""Benchmarks kept by the project (`touchflow bench …`): the engine against a hand-written floor."""
