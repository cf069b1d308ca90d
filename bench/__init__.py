"""Benchmarks for the transform and load stages on a synthetic panel (``python -m bench``).

Not tests: nothing here asserts a time. Each stage runs in its own subprocess so
its peak RSS (``ru_maxrss``) is its own, Polars/Arrow allocations included.
"""
