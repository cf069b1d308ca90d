"""The asset universe: which symbols a run covers and what they are.

Loaded from YAML (``flows/universe.yaml`` by default). Validation is strict so a
typo in a user's universe file is an error naming the key, not a silently
missing asset.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from contracts.vocabulary import AssetClass
from flows.yamlfile import read_yaml_mapping

DEFAULT_UNIVERSE_PATH = Path(__file__).with_name("universe.yaml")


# Exchange-traded funds a symbol alone identifies (issue 14: QQQ and DIA were
# scored as stocks). Not exhaustive: a fund missing here is named in the
# universe file with ``asset_class: etf``, which always wins.
KNOWN_ETFS: frozenset[str] = frozenset(
    {
        "SPY", "IVV", "VOO", "VTI", "QQQ", "QQQM", "DIA", "IWM", "IWB", "IWF", "IWD", "IWN", "IWO", "IJH", "IJR",
        "MDY", "RSP", "VTV", "VUG", "VB", "VO", "VEA", "VWO", "EFA", "EEM", "IEMG", "AGG", "BND", "TLT", "IEF",
        "SHY", "LQD", "HYG", "GLD", "SLV", "USO", "UNG", "XLB", "XLC", "XLE", "XLF", "XLI", "XLK", "XLP", "XLRE",
        "XLU", "XLV", "XLY", "SMH", "SOXX", "XBI", "KRE", "ARKK", "SCHD", "VXX", "TQQQ", "SQQQ",
    }
)  # fmt: skip


def infer_asset_class(symbol: str) -> AssetClass:
    """The asset class a bare (Yahoo-style) ticker implies, for symbols the
    universe does not list: ``=F`` futures (RTY=F), ``^`` indices (^RUT),
    ``KNOWN_ETFS``, otherwise a stock (``equity``). Only stocks get an Alpha
    Score. Crypto pairs are recognised by the sources from their quote."""
    if symbol.upper().endswith("=F"):
        return "future"
    if symbol.startswith("^"):
        return "index"
    if symbol.upper() in KNOWN_ETFS:
        return "etf"
    return "equity"

# Symbols end up in file names and SQL literals; restrict them to what real
# tickers use so nothing hostile can reach a path or a query.
SYMBOL_PATTERN = re.compile(r"^[\^]?[A-Za-z0-9][A-Za-z0-9.=\-]{0,31}$")


class UniverseError(ValueError):
    """A universe file that cannot be used; the message names file and key."""


def check_symbol(symbol: str) -> str:
    if not SYMBOL_PATTERN.match(symbol):
        raise ValueError(
            f"invalid symbol {symbol!r}: use letters, digits and . = - (a leading ^ for indices)"
        )
    return symbol


class Asset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str
    name: str
    asset_class: AssetClass
    sector: str | None = None
    industry: str | None = None
    quote_currency: str | None = None

    @field_validator("symbol")
    @classmethod
    def _valid_symbol(cls, value: str) -> str:
        return check_symbol(value)

    @property
    def is_crypto(self) -> bool:
        return self.asset_class in ("crypto", "index_crypto")


class Universe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmarks: tuple[str, ...]
    assets: tuple[Asset, ...]

    @model_validator(mode="after")
    def _unique_and_benchmarks_known(self) -> Universe:
        seen: set[str] = set()
        for a in self.assets:
            if a.symbol in seen:
                raise ValueError(f"symbol {a.symbol!r} is listed twice")
            seen.add(a.symbol)
        for b in self.benchmarks:
            if b not in seen:
                raise ValueError(f"benchmark {b!r} is not among the assets")
        return self

    def get(self, symbol: str) -> Asset | None:
        return self._by_symbol.get(symbol)

    @cached_property
    def _by_symbol(self) -> dict[str, Asset]:
        # A lookup per symbol of a 2,000-asset universe scanned the tuple: ~0.25 s of the files extract.
        return {a.symbol: a for a in self.assets}

    @property
    def crypto(self) -> list[Asset]:
        return [a for a in self.assets if a.is_crypto]

    @property
    def equities(self) -> list[Asset]:
        """Everything that trades on the exchange calendar (indices, ETFs, stocks)."""
        return [a for a in self.assets if not a.is_crypto]

    @property
    def stocks(self) -> list[Asset]:
        return [a for a in self.assets if a.asset_class == "equity"]

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [a.model_dump() for a in self.assets],
            schema={
                "symbol": pl.String,
                "name": pl.String,
                "asset_class": pl.String,
                "sector": pl.String,
                "industry": pl.String,
                "quote_currency": pl.String,
            },
        )


def load_universe(path: Path | None = None) -> Universe:
    path = Path(path) if path else DEFAULT_UNIVERSE_PATH
    raw = read_yaml_mapping(path, "universe", UniverseError)
    try:
        return Universe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UniverseError(f"universe file {path}: {where}: {first['msg']}") from exc
