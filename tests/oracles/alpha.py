"""The Alpha Score re-derived from docs/alpha_score.md, slowly and plainly.

A test oracle, not production code: it is written from the documentation, not
from ``transforms/factors.py``, so the two check each other. Plain Python
loops over dicts, one stock and one session at a time; ranks and scores are
exact fractions (``fractions.Fraction``), so rounding half up is exact and
floats only appear where the data are floats (prices, fundamentals).

Every rule below cites the part of the doc it implements.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

import polars as pl
from polars.testing import assert_frame_equal

FAMILIES = ("momentum", "value", "quality", "sentiment")  # doc: "From metrics to scores", 3.
WEIGHTS = {"momentum": 30, "value": 25, "quality": 25, "sentiment": 20}  # doc: 4.


@dataclass(frozen=True)
class History:
    """What a metric may read for one stock on session *t*."""

    closes: list[float | None]  # the stock's adj_close on its sessions, first listed session first (None: no bar)
    pos: int  # t's position in ``closes``
    snapshot: Mapping[str, float | None]  # latest fundamentals snapshot with as_of <= t ({} if none)

    def close(self, sessions_back: int) -> float | None:
        """adj_close ``sessions_back`` sessions before t; None before the stock's own history or in a gap."""
        k = self.pos - sessions_back
        return self.closes[k] if k >= 0 else None

    def field(self, name: str) -> float | None:
        return _number(self.snapshot.get(name))


@dataclass(frozen=True)
class OracleMetric:
    name: str
    family: str
    value: Callable[[History], float | None]
    higher_is_better: bool


def _number(x) -> float | None:
    """Missing input is missing, never zero (doc: "A missing input ... null, never zero")."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def momentum(recent: int, base: int) -> Callable[[History], float | None]:
    """``adj_close[t-recent] / adj_close[t-base] - 1`` in sessions; missing without both bars."""

    def value(h: History) -> float | None:
        now, then = h.close(recent), h.close(base)
        if now is None or then is None or then <= 0:  # a return on a non-positive price means nothing
            return None
        return _number(now / then - 1.0)

    return value


def reciprocal(field: str) -> Callable[[History], float | None]:
    """``1 / field``; negative stays negative, zero is missing (doc: "Negative P/E or P/B")."""

    def value(h: History) -> float | None:
        x = h.field(field)
        return None if x is None or x == 0 else _number(1.0 / x)

    return value


def reported(field: str) -> Callable[[History], float | None]:
    return lambda h: h.field(field)


METRICS = (  # doc: the "Metrics" table, row by row
    OracleMetric("momentum_12_1", "momentum", momentum(21, 252), True),
    OracleMetric("momentum_6_1", "momentum", momentum(21, 126), True),
    OracleMetric("earnings_yield", "value", reciprocal("trailing_pe"), True),
    OracleMetric("book_to_price", "value", reciprocal("price_to_book"), True),
    OracleMetric("return_on_equity", "quality", reported("return_on_equity"), True),
    OracleMetric("profit_margin", "quality", reported("profit_margin"), True),
    OracleMetric("debt_to_equity", "quality", reported("debt_to_equity"), False),
    OracleMetric("recommendation_mean", "sentiment", reported("recommendation_mean"), False),
    OracleMetric("short_percent_of_float", "sentiment", reported("short_percent_of_float"), False),
)


def percentile(value: float, peers: list[float]) -> Fraction:
    """100 x (average rank) / n among ``peers`` (which include ``value``), ties sharing their average rank."""
    s = sorted(peers)
    below, through = bisect_left(s, value), bisect_right(s, value)
    average_rank = Fraction(below + 1 + through, 2)  # ranks below+1 .. through, 1-based
    return 100 * average_rank / len(s)


def half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def label(score: int, strong: int, moderate: int) -> str:
    return "Strong" if score >= strong else "Moderate" if score >= moderate else "Weak"


def _snapshots(fundamentals: pl.DataFrame | None) -> dict[str, list[tuple[date, dict]]]:
    out: dict[str, dict[date, dict]] = {}
    if fundamentals is not None:
        for row in fundamentals.to_dicts():  # a repeated (symbol, as_of): the later row wins
            out.setdefault(row["symbol"], {})[row["as_of"]] = row
    return {s: sorted(by_date.items()) for s, by_date in out.items()}


def _snapshot_on(snaps: list[tuple[date, dict]], t: date, tolerance: timedelta | None) -> dict:
    """Latest snapshot with as_of <= t, none if older than ``tolerance`` (doc: "point-in-time rule")."""
    seen = [(as_of, row) for as_of, row in snaps if as_of <= t]
    if not seen:
        return {}
    as_of, row = seen[-1]
    return {} if tolerance is not None and t - as_of > tolerance else row


def alpha_score(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: Sequence[date] | pl.Series,
    fundamentals: pl.DataFrame | None = None,
    *,
    metrics: Sequence[OracleMetric] = METRICS,
    min_sector_size: int = 5,
    min_cross_section: int = 10,
    weights: Mapping[str, float] | None = None,
    strong: int = 75,
    moderate: int = 40,
    fundamentals_tolerance: timedelta | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(scores, metrics)`` with the columns of mart_factor_scores and mart_factor_metrics, sorted by key."""
    stocks = {a["symbol"]: a for a in assets.to_dicts() if a["asset_class"] == "equity"}  # doc: "Who is scored"
    calendar = sorted(set(sessions))
    where = {d: i for i, d in enumerate(calendar)}
    bars: dict[str, dict[int, float]] = {}
    for row in prices.select("symbol", "date", "adj_close").to_dicts():
        if row["symbol"] in stocks and row["date"] in where:  # bars off the session calendar are not sessions
            bars.setdefault(row["symbol"], {})[where[row["date"]]] = row["adj_close"]
    snaps = _snapshots(fundamentals)

    # Metric values per (session, stock): a stock is scored from its first to its last bar.
    values: dict[tuple[int, str], dict[str, float]] = {}
    for symbol, own in bars.items():
        first, last = min(own), max(own)
        closes = [own.get(i) for i in range(first, last + 1)]
        for i in range(first, last + 1):
            h = History(closes, i - first, _snapshot_on(snaps.get(symbol, []), calendar[i], fundamentals_tolerance))
            found = {m.name: m.value(h) for m in metrics}
            values[(i, symbol)] = {k: v for k, v in found.items() if v is not None}

    # Percentile ranks per metric and session (doc: "From metrics to scores", 1 and 2).
    ranks: dict[tuple[int, str], dict[str, tuple[Fraction, str]]] = {key: {} for key in values}
    by_session: dict[int, dict[str, dict[str, float]]] = {}
    for (i, s), v in values.items():
        by_session.setdefault(i, {})[s] = v
    for i, day in by_session.items():
        for m in metrics:
            holders = {s: v[m.name] for s, v in day.items() if m.name in v}
            if len(holders) < min_cross_section:
                continue
            oriented = {s: (x if m.higher_is_better else -x) for s, x in holders.items()}
            for s, x in oriented.items():
                sector = stocks[s]["sector"]
                peers = [y for p, y in oriented.items() if sector is not None and stocks[p]["sector"] == sector]
                if sector is not None and len(peers) >= min_sector_size:
                    ranks[(i, s)][m.name] = (percentile(x, peers), "sector")
                else:
                    ranks[(i, s)][m.name] = (percentile(x, list(oriented.values())), "all")

    family = {m.name: m.family for m in metrics}
    w = {f: Fraction(WEIGHTS[f] if weights is None else weights.get(f, 0)) for f in FAMILIES}
    score_rows, metric_rows = [], []
    for (i, s), ranked in sorted(ranks.items()):
        for name, (pct, scope) in ranked.items():
            metric_rows.append((calendar[i], s, name, values[(i, s)][name], float(pct), scope))
        sub = {}
        for f in FAMILIES:  # 3. the plain mean of the family's available ranks
            have = [pct for name, (pct, _) in ranked.items() if family[name] == f]
            if have:
                sub[f] = sum(have) / len(have)
        if not sub:
            continue  # 5. a stock appears only with at least one sub-score
        total = sum(w[f] for f in sub)  # 4. weights rescaled over the sub-scores the stock has
        alpha = half_up(sum(w[f] * x for f, x in sub.items()) / total) if total else None
        stock = stocks[s]
        if alpha is None:
            alpha_label = summary = headline = None
        else:
            alpha_label = label(alpha, strong, moderate)
            parts = [f"{label(half_up(sub[f]), strong, moderate).lower()} {f}" for f in FAMILIES if f in sub]
            summary = f"Alpha Score of {alpha} reflects {alpha_label.lower()} overall profile with {', '.join(parts)}."
            headline = (
                f"{stock['name'] or s} ({s}) maintains an Alpha Score of {alpha}/100, categorized as {alpha_label}"
                f" within the {stock['sector'] or 'Unclassified'} sector."
            )
        score_rows.append(
            (calendar[i], s, stock["sector"], *[float(sub[f]) if f in sub else None for f in FAMILIES],
             alpha, alpha_label, len(sub), summary, headline)
        )  # fmt: skip
    scores = pl.DataFrame(
        score_rows,
        schema={"date": pl.Date, "symbol": pl.String, "sector": pl.String, "momentum_score": pl.Float64,
                "value_score": pl.Float64, "quality_score": pl.Float64, "sentiment_score": pl.Float64,
                "alpha_score": pl.Int64, "alpha_label": pl.String, "coverage": pl.Int64, "summary": pl.String,
                "headline": pl.String},
        orient="row",
    )  # fmt: skip
    long = pl.DataFrame(
        metric_rows,
        schema={"date": pl.Date, "symbol": pl.String, "metric": pl.String, "value": pl.Float64,
                "rank_pct": pl.Float64, "rank_scope": pl.String},
        orient="row",
    )  # fmt: skip
    return scores.sort("date", "symbol"), long.sort("date", "symbol", "metric")


# Ranks and sub-scores: the oracle's exact fractions against the code's floats.
APPROX_COLUMNS = ("rank_pct", "momentum_score", "value_score", "quality_score", "sentiment_score")


def assert_equal(got: tuple[pl.DataFrame, pl.DataFrame], want: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    """``(scores, metrics)`` equal to the oracle's: same rows (in any order), ranks and
    sub-scores to 1e-9, everything else exactly."""
    for g, w, key in zip(got, want, (["date", "symbol"], ["date", "symbol", "metric"]), strict=True):
        g = g.sort(key)
        assert g.schema == w.schema
        assert g.height == w.height, f"{g.height} rows, the oracle has {w.height}"
        exact = [c for c in g.columns if c not in APPROX_COLUMNS]
        assert_frame_equal(g.select(exact), w.select(exact), check_exact=True)
        approx = [c for c in g.columns if c in APPROX_COLUMNS]
        assert_frame_equal(g.select(approx), w.select(approx), check_exact=False, rel_tol=0, abs_tol=1e-9)
