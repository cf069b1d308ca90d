"""The ``sample`` source: a deterministic, offline, SYNTHETIC market.

It exists so the pipeline can be demonstrated and tested with no network, and
so every downstream signal has something real to find. Its prices are made up:
every surface that shows them says so (asset names, ``source``, marts'
manifests, the CLI).

The model, per calendar day:
- equities trade on XNYS sessions only: a market factor (^GSPC), a small-cap
  factor (^RUT = market beta + size factor) and sector factors, each with
  GARCH(1,1) volatility and Student-t(4) shocks (fat tails, vol clustering);
  stocks load on them plus idiosyncratic noise; IWM/SPY track their index.
- crypto trades every day: a crypto factor with its own GARCH, plus a spillover
  from the same session's small-cap return whose loading follows a scripted
  regime path (coupled, decoupled, inverse), so the ^RUT-altcoin correlation
  changes over time and turns negative in some stretches. Altcoins load more
  on it than BTC/ETH.

Crypto closes (``crypto_close``): the daily bars above close at 00:00 UTC.
With ``equity_close`` the source also generates hourly candles, a Brownian
bridge in log price between consecutive daily closes (so the candle ending at
00:00 UTC closes exactly at the daily close), and rebuilds each crypto bar
from them at the equity close of its date (transforms.crypto_close).

Determinism: every random draw is indexed by calendar day from a fixed origin
over a fixed horizon, so a run to an earlier ``as_of`` produces exactly the
prefix of a run to a later one, which is what makes incremental runs and
backfills agree.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from flows.calendar import equity_closes
from flows.calendar import sessions as xnys_sessions
from flows.sources.base import SourceBatch, SourceError, SymbolOutcome, conform_assets, conform_bars, with_origin
from flows.sources.sample_fundamentals import sample_fundamentals
from flows.universe import Asset, Universe
from transforms.crypto_close import HOURLY_SCHEMA, equity_close_bars

ORIGIN = date(2014, 1, 1)
HORIZON_END = date(2045, 12, 31)
SYNTHETIC_TAG = " [synthetic]"

# First trading day of assets that list after ORIGIN (real listing dates, so
# windows that span a listing are exercised).
LISTINGS = {
    "ETH": date(2015, 8, 8),
    "LINK": date(2017, 9, 20),
    "ADA": date(2017, 10, 1),
    "SOL": date(2020, 4, 10),
    "DOT": date(2020, 8, 19),
    "AVAX": date(2020, 9, 22),
    "BOOT": date(2014, 10, 30),
    "SHAK": date(2015, 1, 30),
    "CHRD": date(2016, 9, 1),
}

# Loading of crypto on the same session's small-cap return, by period start.
# Scripted rather than random so the demo always has a coupling era, a
# decoupling and inverse stretches to detect.
SPILLOVER_REGIMES: list[tuple[date, float]] = [
    (date(2014, 1, 1), 0.15),
    (date(2016, 6, 20), -0.6),
    (date(2017, 1, 1), 0.25),
    (date(2018, 2, 1), 0.7),
    (date(2019, 3, 1), -0.5),
    (date(2019, 10, 1), 0.2),
    (date(2020, 3, 1), 1.8),
    (date(2022, 11, 1), 1.1),
    (date(2023, 3, 1), -0.6),
    (date(2023, 10, 1), 0.9),
    (date(2025, 2, 1), 0.1),
    (date(2025, 8, 1), 1.2),
]

START_LEVEL = {"^RUT": 1150.0, "^GSPC": 1830.0, "BTC": 770.0, "ETH": 2.8, "XRP": 0.025, "DOGE": 0.0015}
DAILY_VOL = {"market": 0.009, "size": 0.006, "sector": 0.006, "crypto": 0.03}


@dataclass(frozen=True)
class _Garch:
    omega: float
    alpha: float = 0.08
    beta: float = 0.90

    @classmethod
    def for_vol(cls, daily_vol: float) -> _Garch:
        return cls(omega=daily_vol**2 * (1 - 0.08 - 0.90))


def _garch_path(shocks: np.ndarray, g: _Garch) -> np.ndarray:
    """Returns from unit shocks with GARCH(1,1) volatility; shocks is (T, K)."""
    out = np.empty_like(shocks)
    var = np.full(shocks.shape[1], g.omega / (1 - g.alpha - g.beta))
    prev = np.zeros(shocks.shape[1])
    for t in range(shocks.shape[0]):
        var = g.omega + g.alpha * prev**2 + g.beta * var
        prev = np.sqrt(var) * shocks[t]
        out[t] = prev
    return out


def _student_t(rng: np.random.Generator, shape: tuple[int, ...], df: float = 4.0) -> np.ndarray:
    # Scaled to unit variance so vol parameters mean what they say.
    return rng.standard_t(df, size=shape) / np.sqrt(df / (df - 2))


def _stable_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def _spillover_path(days: np.ndarray) -> np.ndarray:
    starts = np.array([np.datetime64(d) for d, _ in SPILLOVER_REGIMES])
    levels = np.array([lvl for _, lvl in SPILLOVER_REGIMES])
    pos = np.searchsorted(starts, days, side="right") - 1
    raw = levels[np.clip(pos, 0, None)]
    # Smooth the switches over ~3 weeks: regimes drift in, they don't jump.
    kernel = np.ones(21) / 21
    padded = np.concatenate([np.full(20, raw[0]), raw])
    return np.convolve(padded, kernel, mode="valid")


class SampleSource:
    name = "sample"
    reads_stored_tail = False

    def __init__(self, seed: int = 20160714, crypto_close: str = "utc_midnight") -> None:
        self.seed = seed
        self.crypto_close = crypto_close

    def fetch(
        self,
        universe: Universe,
        start: date,
        as_of: date,
        last_dates: dict[str, date],
        stored_tail: pl.DataFrame,
    ) -> SourceBatch:
        if as_of > HORIZON_END:
            raise SourceError(f"the sample market ends on {HORIZON_END}; as_of {as_of} is beyond it")
        history = self.generate(universe, as_of)
        if self.crypto_close == "equity_close":
            history = self.at_equity_close(universe, history, as_of)
        bars = history.filter(pl.col("date") >= start)
        assets = self.assets(universe)
        outcomes = []
        for a in universe.assets:
            rows = bars.filter(pl.col("symbol") == a.symbol)
            outcomes.append(
                SymbolOutcome(
                    symbol=a.symbol,
                    source=self.name,
                    status="ok",
                    rows=rows.height,
                    first_date=rows["date"].min() if rows.height else None,
                    last_date=rows["date"].max() if rows.height else None,
                )
            )
        # Snapshots depend on trailing prices: give them the whole history, not
        # just this run's range, so a year-by-year backfill equals one run.
        stocks = assets.filter(pl.col("asset_class") == "equity")
        fundamentals = sample_fundamentals(stocks, history, self.seed, start, as_of)
        return SourceBatch(
            bars=bars, assets=assets, outcomes=outcomes, fundamentals=fundamentals, synthetic=True
        )

    def assets(self, universe: Universe) -> pl.DataFrame:
        rows = []
        for a in universe.assets:
            rows.append(
                {
                    **a.model_dump(),
                    "name": a.name + SYNTHETIC_TAG,
                    "quote_currency": a.quote_currency or ("USD" if a.is_crypto else "USD"),
                    "source": self.name,
                    "source_symbol": a.symbol,
                }
            )
        return conform_assets(pl.DataFrame(rows))

    def generate(self, universe: Universe, as_of: date) -> pl.DataFrame:
        """All bars from ORIGIN to ``as_of`` (inclusive), every asset of the universe."""
        n_horizon = (HORIZON_END - ORIGIN).days + 1
        n = (as_of - ORIGIN).days + 1
        if n <= 0:
            return conform_bars(pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date}))
        days = np.arange(np.datetime64(ORIGIN), np.datetime64(ORIGIN) + n)
        sess = set(xnys_sessions(ORIGIN, as_of).to_list())
        is_session = np.array([d in sess for d in days.astype("datetime64[D]").astype(object)])

        def shocks(name: str, k: int = 1) -> np.ndarray:
            # Each named stream is drawn over the whole horizon and cut to n
            # rows: prefix-stable whatever as_of is.
            rng = np.random.default_rng(_stable_seed(self.seed, name))
            return _student_t(rng, (n_horizon, k))[:n]

        # Equity factors move on sessions only.
        mask = is_session[:, None].astype(float)
        market = _garch_path(shocks("market") * mask, _Garch.for_vol(DAILY_VOL["market"]))[:, 0] * is_session
        size = _garch_path(shocks("size") * mask, _Garch.for_vol(DAILY_VOL["size"]))[:, 0] * is_session
        small_cap = 1.1 * market + size
        sectors = sorted({a.sector for a in universe.stocks if a.sector})
        sector_f = {
            s: _garch_path(shocks(f"sector:{s}") * mask, _Garch.for_vol(DAILY_VOL["sector"]))[:, 0] * is_session
            for s in sectors
        }
        crypto_f = _garch_path(shocks("crypto"), _Garch.for_vol(DAILY_VOL["crypto"]))[:, 0]
        spill = _spillover_path(days)

        frames = []
        for a in universe.assets:
            rng = np.random.default_rng(_stable_seed(self.seed, "params:" + a.symbol))
            idio = shocks("idio:" + a.symbol)[:, 0]
            if a.is_crypto:
                major = a.symbol in ("BTC", "ETH")
                loading = (1.5 if major else 2.6) * rng.uniform(0.85, 1.15)
                beta_c = (1.0 if major else 1.25) * rng.uniform(0.9, 1.1)
                idio_vol = (0.012 if major else 0.03) * rng.uniform(0.8, 1.2)
                r = beta_c * crypto_f + loading * spill * small_cap + idio_vol * idio
                r = r + 0.0006 - 0.5 * (beta_c * DAILY_VOL["crypto"]) ** 2
                live = np.ones(n, dtype=bool)
            else:
                if a.symbol == "^RUT":
                    r = small_cap
                elif a.symbol == "^GSPC":
                    r = market
                elif a.symbol == "IWM":
                    r = small_cap + 0.0004 * idio
                elif a.symbol == "SPY":
                    r = market + 0.0002 * idio
                else:
                    b_m = rng.uniform(0.7, 1.4)
                    b_s = rng.uniform(-0.2, 0.9)
                    idio_vol = rng.uniform(0.008, 0.022)
                    sec = sector_f.get(a.sector or "", np.zeros(n))
                    r = b_m * market + b_s * size + sec + idio_vol * idio
                r = (r + 0.0003) * is_session
                live = is_session.copy()
            listing = LISTINGS.get(a.symbol)
            if listing is not None:
                live &= days >= np.datetime64(listing)
            level0 = START_LEVEL.get(a.symbol, float(np.exp(rng.uniform(np.log(8), np.log(400)))))
            close = level0 * np.exp(np.cumsum(np.where(live, r, 0.0)))
            frames.append(self._ohlcv(a, days, close, r, live, rng))
        return conform_bars(with_origin(pl.concat(frames), self.name))

    def hourly(self, universe: Universe, daily: pl.DataFrame) -> pl.DataFrame:
        """Hourly candles (HOURLY_SCHEMA) of every crypto asset, consistent with its daily bars in ``daily``.

        Day D's 24 candles run from D 00:00 to D+1 00:00 UTC: a Brownian bridge in
        log price from the previous daily close to D's close, so the last candle
        closes exactly at the daily close. Shocks are indexed by day from ORIGIN
        over the whole horizon: prefix-stable, like the daily bars.
        """
        n_horizon = (HORIZON_END - ORIGIN).days + 1
        steps = np.arange(1, 25) / 24.0
        frames = []
        for a in universe.crypto:
            bars = daily.filter(pl.col("symbol") == a.symbol).sort("date")
            if bars.is_empty():
                continue
            rng = np.random.default_rng(_stable_seed(self.seed, "hourly:" + a.symbol))
            z = rng.standard_normal((n_horizon, 24))
            offset = (bars["date"].to_numpy().astype("datetime64[D]") - np.datetime64(ORIGIN)).astype(np.int64)
            z = z[offset]
            logc = np.log(bars["close"].to_numpy())
            prev = np.concatenate([[logc[0]], logc[:-1]])
            s = DAILY_VOL["crypto"] / np.sqrt(24) * 0.5
            w = np.cumsum(z, axis=1)
            bridge = w - steps[None, :] * w[:, -1:]
            logp = prev[:, None] + steps[None, :] * (logc - prev)[:, None] + s * bridge
            logp[:, -1] = logc  # exactly the daily close, whatever the rounding
            close = np.exp(logp)
            opn = np.exp(np.concatenate([prev[:, None], logp[:, :-1]], axis=1))
            high = np.maximum(opn, close) * np.exp(0.5 * s * np.abs(z))
            low = np.minimum(opn, close) * np.exp(-0.5 * s * np.abs(z))
            volume = np.repeat((bars["volume"].to_numpy() / 24.0)[:, None], 24, axis=1)
            day_start = (bars["date"].cast(pl.Datetime("ms")).cast(pl.Int64).to_numpy())[:, None]
            ts = day_start + np.arange(24)[None, :] * 3_600_000
            frames.append(pl.DataFrame({
                "symbol": a.symbol, "ts": ts.ravel(), "open": opn.ravel(), "high": high.ravel(),
                "low": low.ravel(), "close": close.ravel(), "volume": volume.ravel(),
            }).with_columns(pl.col("ts").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")))
        if not frames:
            return pl.DataFrame(schema=HOURLY_SCHEMA)
        return pl.concat(frames).select([pl.col(k).cast(t) for k, t in HOURLY_SCHEMA.items()])

    def at_equity_close(self, universe: Universe, daily: pl.DataFrame, as_of: date) -> pl.DataFrame:
        """``daily`` with each crypto bar rebuilt at the equity close of its date from ``hourly``."""
        crypto = [a.symbol for a in universe.crypto]
        rebuilt = equity_close_bars(self.hourly(universe, daily), equity_closes(ORIGIN, as_of))
        others = daily.filter(~pl.col("symbol").is_in(crypto))
        return conform_bars(pl.concat([others, with_origin(rebuilt, self.name)], how="diagonal_relaxed"))

    @staticmethod
    def _ohlcv(
        a: Asset, days: np.ndarray, close: np.ndarray, r: np.ndarray, live: np.ndarray, rng: np.random.Generator
    ) -> pl.DataFrame:
        n = len(days)
        # Intraday ranges from a stream of their own so parameters drawn above
        # are not disturbed by the number of days.
        u = np.random.default_rng(_stable_seed(int(close[0] * 1e6) % 2**31, "ohlc:" + a.symbol))
        noise = u.standard_normal((n, 3))
        sigma = np.maximum(np.abs(r), 0.004)
        prev = np.concatenate([[close[0]], close[:-1]])
        opn = prev * np.exp(0.25 * sigma * noise[:, 0])
        high = np.maximum(opn, close) * np.exp(0.5 * sigma * np.abs(noise[:, 1]))
        low = np.minimum(opn, close) * np.exp(-0.5 * sigma * np.abs(noise[:, 2]))
        base_volume = 2e9 if a.asset_class == "index" else (5e8 if a.is_crypto else 2e6)
        volume = base_volume * np.exp(0.3 * noise[:, 1] + 8 * np.abs(r)) / np.maximum(close, 1e-9) ** (
            0.0 if a.asset_class == "index" else 0.5
        )
        frame = pl.DataFrame(
            {
                "symbol": a.symbol,
                "date": days.astype("datetime64[D]"),
                "open": opn,
                "high": high,
                "low": low,
                "close": close,
                "adj_close": close,
                "volume": np.round(volume),
            }
        )
        return frame.filter(pl.Series(live))
