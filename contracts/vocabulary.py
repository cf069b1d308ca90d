"""The words every layer shares: asset classes, source names, default stablecoins.

Sources tag assets with these classes, transforms pick crypto and indices by
them, the warehouse's rules and the settings' jump bounds are keyed by them.
One home, so a new class or source is added once and nothing drifts.
"""

from __future__ import annotations

from typing import Literal, get_args

AssetClass = Literal["index", "etf", "equity", "future", "crypto", "index_crypto"]
ASSET_CLASSES: tuple[str, ...] = get_args(AssetClass)

# Trade every UTC day (the derived crypto indices too).
CRYPTO_CLASSES: tuple[str, ...] = ("crypto", "index_crypto")
# Benchmarks and derived indices: what the correlation marts correlate against.
INDEX_CLASSES: tuple[str, ...] = ("index", "index_crypto")
# Expected on every session of the exchange calendar (futures trade on their
# exchange's own hours, so their gaps are not judged against it).
EQUITY_CLASSES: tuple[str, ...] = ("index", "etf", "equity")

# The largest one-day move (a factor) per asset class that a bar may make
# without the next bar confirming it (Settings.jump_bounds' default). Index
# futures (RTY=F) move with their index; a roll changes the price by a few
# percent, not 2x.
DEFAULT_JUMP_BOUNDS: dict[str, float] = {
    "index": 1.5, "etf": 2.0, "future": 2.0, "equity": 3.0, "crypto": 5.0, "index_crypto": 5.0,
}  # fmt: skip

# Where a run's bars come from (``xasset run --source``).
Source = Literal["sample", "files", "live"]
SOURCES: tuple[str, ...] = get_args(Source)

# Crypto assets left out of the ALTS indices (Settings.stablecoins and
# MartParams.stablecoins default to it). Every USD- or EUR-pegged coin: they carry
# no market view and would only dilute an equal-weight basket, so leaving one
# in is wrong while naming a coin the universe does not hold costs nothing.
# This is the union of the two lists that once disagreed (9 in Settings, 17 in
# the transforms); it includes the de-pegged UST/USTC, which are not a market
# view on crypto either. docs/analytics.md lists the same coins.
DEFAULT_STABLECOINS: tuple[str, ...] = (
    "USDT", "USDC", "DAI", "BUSD", "TUSD", "USDP", "FDUSD", "PYUSD", "USDE", "USDD",
    "GUSD", "FRAX", "LUSD", "USTC", "UST", "EURC", "EURT",
)  # fmt: skip

# DuckDB storage format the published warehouse is written in
# (Settings.warehouse_storage_version's default; warehouse.build's when a
# caller passes none): v1.1.0 (storage 64) is read by DuckDB 0.10 to 2.x.
DEFAULT_WAREHOUSE_STORAGE_VERSION = "v1.1.0"

# Settings.warehouse_compact_above's default (warehouse.build's when a caller
# passes none): measured, a copied file stayed at 0.8-0.94x its full build over
# 30 nights (docs/performance.md), so 2x only catches runaway growth.
DEFAULT_WAREHOUSE_COMPACT_ABOVE = 2.0
