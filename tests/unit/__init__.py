"""Unit tests: pure, fast, no lowering or compiling.

A package, so that its modules (test_golden.py, ...) do not clash with tests/e2e's of the same name.
"""
