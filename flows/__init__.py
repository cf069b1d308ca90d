"""Prefect flows, data sources, the CLI and the settings of xasset."""

__version__ = "0.1.0"
