"""Prefect flows, data sources, the CLI and the settings of xasset."""

from flows import allocator

# Before anything of ours imports Polars: its allocator reads its options when Polars is loaded.
allocator.configure()

__version__ = "0.1.0"
