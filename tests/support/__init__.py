"""Test support shared by the unit and integration tests and the benchmarks (one place each)."""
