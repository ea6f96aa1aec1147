"""Benchmarks of emostream (timing only; they use random-weight models of the real sizes)."""
