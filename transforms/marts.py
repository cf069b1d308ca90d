"""Every derived table of a run, from stored prices: one pure function.

The flow reads the lake and the calendar, calls ``build_marts`` and loads the
result; the benchmark times the same function. Warnings (a missing benchmark,
say) are returned, not logged, to keep this module free of side effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from transforms.correlation import rolling_correlation
from transforms.returns import log_returns

CRYPTO_CLASSES = ("crypto", "index_crypto")


@dataclass(frozen=True)
class MartParams:
    benchmarks: Sequence[str] = ("^RUT", "^GSPC")
    windows: Sequence[int] = (30, 90, 180, 365)


@dataclass
class Marts:
    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)


def build_marts(prices: pl.DataFrame, assets: pl.DataFrame, sessions: pl.Series, params: MartParams) -> Marts:
    warnings: list[str] = []
    present = set(prices["symbol"].unique().to_list())
    benchmarks = [b for b in params.benchmarks if b in present]
    for b in params.benchmarks:
        if b not in present:
            warnings.append(f"benchmark {b} has no prices in this run; correlations versus it are skipped")
    crypto = assets.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES) & pl.col("symbol").is_in(list(present)))
    returns = log_returns(prices, sessions)
    corr = rolling_correlation(returns, sessions, crypto["symbol"].to_list(), benchmarks, params.windows)
    return Marts(
        tables={
            "dim_asset": assets,
            "fact_returns": returns,
            "mart_rolling_correlation": corr,
        },
        warnings=warnings,
    )
