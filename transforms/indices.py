"""Derived crypto indices: ALTS (equal-weight altcoins), MAJORS (BTC + ETH) and
ALTS_DV (the ALTS members, dollar-volume weighted, rebalanced monthly).

ALTS and MAJORS are equal-weight and rebalanced every UTC day: the index's simple return
on day d is the plain mean of its members' simple returns from d-1 to d, over
the members that have an adjusted close on *both* days. A member that lists
later simply starts contributing on its second day; a member with a missing
candle sits out the day after the gap instead of having its multi-day move
booked as one daily return. The index level starts at ``base_level`` on the
day before its first return (a day on which at least one member has a close),
so the index never exists before it has members.

Where no member is priced on both ends of a day the index has no bar that
day. When members are priced again after such a gap, the first day back is
**bridged**: its return is the mean, over the members priced on both the
index's last bar before the gap and that day, of their simple return across
the gap (equal-weight buy-and-hold over the gap, as no daily rebalance could
happen). The bar is then more than one day after the previous one, which is
how every mart downstream recognises it (``gap_days`` in the milestones,
``spans_gap`` in period returns): a bridged level is never a flat line, and a
return across it is never passed off as one day's. Without any member priced
on both ends, the day gets no bar and the next consecutive day chains on.

ALTS_DV is the investable cousin: see ``dollar_volume_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import NamedTuple

import polars as pl

from contracts.tables import BAR_SCHEMA, DIM_ASSET, DIM_INDEX_MEMBER
from contracts.vocabulary import DEFAULT_STABLECOINS

DEFAULT_MAJORS: tuple[str, ...] = ("BTC", "ETH")
EQUAL_WEIGHT_DAILY = "equal_weight_daily"
DOLLAR_VOLUME_MONTHLY = "dollar_volume_monthly"


class CryptoIndices(NamedTuple):
    bars: pl.DataFrame  # prices contract
    assets: pl.DataFrame  # assets contract, asset_class index_crypto, source derived
    members: pl.DataFrame  # dim_index_member(index_symbol, member_symbol, method)


def index_members(
    assets: pl.DataFrame,
    *,
    majors: Sequence[str] = DEFAULT_MAJORS,
    stablecoins: Sequence[str] = DEFAULT_STABLECOINS,
    alts_symbol: str = "ALTS",
    majors_symbol: str = "MAJORS",
    alts_dv_symbol: str | None = "ALTS_DV",
) -> pl.DataFrame:
    """dim_index_member for ALTS, MAJORS and ALTS_DV from the run's crypto assets.

    ALTS (and ALTS_DV, unless ``alts_dv_symbol`` is None) is every ``crypto``
    asset that is neither a major nor a stablecoin; MAJORS is the majors that
    are in the run. ``method`` names how the index weights its members.
    """
    crypto = assets.filter(pl.col("asset_class") == "crypto").get_column("symbol").unique().sort().to_list()
    skip = set(majors) | set(stablecoins)
    alts = [s for s in crypto if s not in skip]
    rows = [(alts_symbol, s, EQUAL_WEIGHT_DAILY) for s in alts]
    rows += [(majors_symbol, s, EQUAL_WEIGHT_DAILY) for s in crypto if s in set(majors)]
    if alts_dv_symbol is not None:
        rows += [(alts_dv_symbol, s, DOLLAR_VOLUME_MONTHLY) for s in alts]
    return pl.DataFrame(rows, schema=DIM_INDEX_MEMBER.polars_schema, orient="row")


def equal_weight_index(
    prices: pl.DataFrame, members: Sequence[str], index_symbol: str, *, base_level: float = 100.0
) -> pl.DataFrame:
    """Daily-rebalanced equal-weight index bars (prices contract).

    open = high = low = close = adj_close = the level: an index built from
    daily closes has no intraday path. ``volume`` is the members' dollar
    volume (close x volume, in the quote currency) summed over the members
    with a bar that day; null when none of them reports a volume. Days after
    a gap are bridged (module docstring).
    """
    daily = _equal_weight_daily(prices, members)
    consecutive = daily.filter(pl.col("_ret").is_not_null())
    if consecutive.is_empty():
        return pl.DataFrame(schema=BAR_SCHEMA)
    base_day = consecutive.select(pl.col("date").min().dt.offset_by("-1d")).item()
    return_days = _bridged(daily, _member_closes(prices, members), base_day)
    levels = pl.concat(
        [
            daily.filter(pl.col("date") == base_day).with_columns(pl.lit(0.0).alias("_ret")),
            return_days,
        ]
    ).with_columns(_chain(base_level, 1.0 + pl.col("_ret")).alias("level"))
    return _as_bars(levels, index_symbol)


def _chain(start: float, growth: pl.Expr) -> pl.Expr:
    """start, start*g1, (start*g1)*g2, ...: a left fold, so a run that starts from
    a published level reproduces the later levels bit for bit (the first row's
    growth is replaced by ``start``)."""
    return pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(start, dtype=pl.Float64)).otherwise(growth).cum_prod()


def equal_weight_index_since(
    prices: pl.DataFrame, members: Sequence[str], index_symbol: str, previous: pl.DataFrame, since: date
) -> pl.DataFrame | None:
    """The bars of ``equal_weight_index`` dated on/after ``since``, chained from
    ``previous`` (this index's bars of the previous run): only the members'
    bars from the last previous bar before ``since`` on are read. None when
    ``previous`` has no bar before ``since`` (the index starts in the changed
    range: build it whole).
    """
    seed = previous.filter(pl.col("date") < since).sort("date").tail(1)
    if seed.is_empty():
        return None
    seed_day = seed["date"].item()
    p = prices.filter(pl.col("date") >= pl.lit(min(seed_day, since - timedelta(days=1))))
    daily = _equal_weight_daily(p, members).filter(pl.col("date") > seed_day)
    return_days = _bridged(daily, _member_closes(p, members), seed_day).filter(pl.col("date") >= since)
    levels = pl.concat([seed.select("date", pl.lit(0.0).alias("_ret"), "volume"), return_days.select("date", "_ret", "volume")])
    levels = levels.with_columns(_chain(seed["adj_close"].item(), 1.0 + pl.col("_ret")).alias("level")).slice(1)
    return _as_bars(levels, index_symbol)


def _member_closes(prices: pl.DataFrame, members: Sequence[str]) -> pl.DataFrame:
    return (
        prices.filter(pl.col("symbol").is_in(list(members)) & (pl.col("adj_close") > 0))
        .select("symbol", "date", "adj_close")
        .sort("date", "symbol")
    )


def _bridged(daily: pl.DataFrame, closes: pl.DataFrame, last_bar: date) -> pl.DataFrame:
    """(date, _ret, volume) of the bar days after ``last_bar``: the days with a
    daily return, plus the bridged days (a day with member closes but no daily
    return, some member also priced on the index's last bar before it: its
    ``_ret`` is those members' mean return since that bar)."""
    after = daily.filter(pl.col("date") > last_bar)
    gaps = after.filter(pl.col("_ret").is_null())
    if gaps.is_empty():
        return after.filter(pl.col("_ret").is_not_null())
    bar_days = after.filter(pl.col("_ret").is_not_null())["date"].to_list()
    by_day: dict[date, dict[str, float]] = {}
    for (day,), rows in closes.filter(pl.col("date") >= last_bar).group_by("date"):
        by_day[day] = dict(zip(rows["symbol"].to_list(), rows["adj_close"].to_list(), strict=True))
    bridged: dict[date, float] = {}
    consecutive_i, previous = 0, last_bar
    for day in gaps["date"].to_list():
        while consecutive_i < len(bar_days) and bar_days[consecutive_i] < day:
            previous = max(previous, bar_days[consecutive_i])
            consecutive_i += 1
        before, now = by_day.get(previous, {}), by_day.get(day, {})
        both = sorted(set(before) & set(now))
        if both:
            bridged[day] = sum(now[s] / before[s] - 1.0 for s in both) / len(both)
            previous = day
    fill = pl.DataFrame({"date": list(bridged), "_b": list(bridged.values())}, schema={"date": pl.Date, "_b": pl.Float64})
    return (
        after.join(fill, on="date", how="left")
        .with_columns(pl.coalesce("_ret", "_b").alias("_ret"))
        .filter(pl.col("_ret").is_not_null())
        .drop("_b")
        .sort("date")
    )


def _equal_weight_daily(prices: pl.DataFrame, members: Sequence[str]) -> pl.DataFrame:
    """(date, _ret, volume): per day with a member close, the members' mean
    simple return (null without a member priced on the day before too) and
    dollar volume."""
    p = (
        prices.filter(pl.col("symbol").is_in(list(members)))
        .select("symbol", "date", "close", "adj_close", "volume")
        .sort("symbol", "date")
    )
    prev_close = pl.col("adj_close").shift(1).over("symbol")
    prev_date = pl.col("date").shift(1).over("symbol")
    consecutive = prev_date == pl.col("date").dt.offset_by("-1d")
    ret = pl.when(consecutive & (prev_close > 0) & (pl.col("adj_close") > 0)).then(
        pl.col("adj_close") / prev_close - 1.0
    )
    dollar_volume = pl.col("close") * pl.col("volume")
    # Sums over each day's members in symbol order, as lists: a plain group_by
    # sum adds partial sums whose split depends on the frame's size, so the
    # last bits would differ between a whole rebuild and an incremental one.
    return (
        p.with_columns(ret.alias("_ret"), dollar_volume.alias("_dv"))
        .group_by("date")
        .agg(pl.col("_ret").drop_nulls(), pl.col("_dv").drop_nulls())
        .select(
            "date",
            pl.when(pl.col("_ret").list.len() > 0).then(pl.col("_ret").list.mean()).alias("_ret"),
            pl.when(pl.col("_dv").list.len() > 0).then(pl.col("_dv").list.sum()).alias("volume"),
        )
        .sort("date")
    )


def dollar_volume_index(
    prices: pl.DataFrame, members: Sequence[str], index_symbol: str, *, base_level: float = 100.0
) -> pl.DataFrame:
    """Dollar-volume-weighted, monthly-rebalanced index bars (prices contract).

    At the end of each UTC calendar month the index is rebalanced into the
    members that traded in that month, weighted by their dollar volume over
    the month (sum of close x volume), at each member's last adjusted close of
    the month. Within the next month it is buy-and-hold: the level is the
    rebalance level times sum(w_i * close_i,t / base_close_i), a member
    without a candle on a day being valued at its last close (a missing print
    is not a price move). A row exists on the days where at least one held
    member has a close. The first row is the last day of the first month with
    traded members, at ``base_level``. ``volume`` is as for
    ``equal_weight_index``. After months without any trade (a hole in the
    data) the last holdings are kept until the next rebalance, so the first
    rows after the hole carry the members' move across it.
    """
    p = _dv_member_bars(prices, members)
    held, factors = _dv_held(p)
    if held.filter(pl.col("_n") > 0).is_empty():
        return pl.DataFrame(schema=BAR_SCHEMA)
    rows = _dv_rows(held, factors, base_level)
    first_month = factors.get_column("hold_month").min()
    base_day = p.filter(pl.col("month") == pl.lit(first_month).dt.offset_by("-1mo")).get_column("date").max()
    levels = pl.concat([pl.DataFrame({"date": [base_day], "level": [base_level]}, schema=rows.schema), rows])
    return _as_bars(levels.join(_dv_volume(p), on="date", how="left").sort("date"), index_symbol)


def dollar_volume_index_since(
    prices: pl.DataFrame, members: Sequence[str], index_symbol: str, previous: pl.DataFrame, since: date
) -> pl.DataFrame | None:
    """The bars of ``dollar_volume_index`` dated on/after ``since``, from the
    members' bars of the month before ``since``'s month on, chained from the
    rebalance level published in ``previous`` (the level on the last valued day
    of the month before, which is where the month's weights are struck). None
    when that level was not published (the index starts in the changed range,
    or that day had no held member's close): build it whole.
    """
    month = since.replace(day=1)
    p = _dv_member_bars(prices.filter(pl.col("date") >= pl.lit(month).dt.offset_by("-1mo")), members)
    held, factors = _dv_held(p)
    if factors.is_empty() or factors["hold_month"].min() != month:
        return None
    rebalance_day = held.filter(pl.col("hold_month") == pl.lit(month))["date"].min()
    before = p.filter(pl.col("date") < month)["date"].max()
    seed = previous.filter(pl.col("date") == before) if before is not None else previous.clear()
    if rebalance_day is None or seed.is_empty():
        return None
    rows = _dv_rows(held, factors, seed["adj_close"].item()).filter(pl.col("date") >= since)
    return _as_bars(rows.join(_dv_volume(p), on="date", how="left").sort("date"), index_symbol)


def _dv_member_bars(prices: pl.DataFrame, members: Sequence[str]) -> pl.DataFrame:
    return (
        prices.filter(pl.col("symbol").is_in(list(members)) & (pl.col("adj_close") > 0))
        .select("symbol", "date", "close", "adj_close", "volume", pl.col("date").dt.truncate("1mo").alias("month"))
        .sort("symbol", "date")
    )


def _dv_held(p: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(held: per hold month and day the weighted relative value ``_rel`` and
    the count of held members with a close ``_n``; factors: per hold month
    the value at its last valued day ``_f``)."""
    # Sums as list sums in a fixed order (see _equal_weight_daily).
    monthly = (
        p.group_by("symbol", "month")
        .agg((pl.col("close") * pl.col("volume")).alias("_dv"), pl.col("adj_close").last().alias("_base"))
        .with_columns(pl.col("_dv").list.sum())
        .sort("month", "symbol")
        .filter(pl.col("_dv") > 0)
    )
    totals = monthly.group_by("month").agg(pl.col("_dv").alias("_total")).with_columns(pl.col("_total").list.sum())
    holdings = monthly.join(totals, on="month", how="left", maintain_order="left").select(
        "symbol",
        pl.col("month").dt.offset_by("1mo").alias("hold_month"),
        (pl.col("_dv") / pl.col("_total")).alias("_w"),
        "_base",
    )
    # A day is valued with the holdings of its month, or, after months without
    # any trade (a hole in the data), with the last holdings struck before it:
    # buy-and-hold across the hole, so the level is bridged, never flat.
    struck = holdings.select("hold_month").unique().sort("hold_month")
    days = (
        p.select("date", "month").unique().sort("month")
        .join_asof(struck, left_on="month", right_on="hold_month", strategy="backward")
        .drop_nulls("hold_month")
        .select("date", "hold_month")
    )  # fmt: skip
    held = (
        holdings.join(days, on="hold_month")
        .join(p.select("symbol", "date", pl.col("adj_close").alias("_px")), on=["symbol", "date"], how="left")
        .sort("symbol", "date")
        .with_columns(
            pl.col("_px").forward_fill().over("symbol", "hold_month").fill_null(pl.col("_base")).alias("_val"),
        )
        .group_by("hold_month", "date")
        .agg(
            (pl.col("_w") * pl.col("_val") / pl.col("_base")).alias("_rel"),
            pl.col("_px").count().alias("_n"),
        )
        .with_columns(pl.col("_rel").list.sum())
        .sort("date")
    )
    # Month factor = value at the month's last valued day, which is where the
    # next month's weights are struck.
    factors = held.group_by("hold_month").agg(pl.col("_rel").last().alias("_f")).sort("hold_month")
    return held, factors


def _dv_rows(held: pl.DataFrame, factors: pl.DataFrame, start: float) -> pl.DataFrame:
    """(date, level) of the valued days: the level of the month's rebalance
    (``start`` for the first month, then chained by the month factors) times
    the relative value."""
    factors = factors.with_columns(_chain(start, pl.col("_f").shift(1)).alias("_level0"))
    return held.filter(pl.col("_n") > 0).join(factors, on="hold_month").select(
        "date", (pl.col("_level0") * pl.col("_rel")).alias("level")
    )


def _dv_volume(p: pl.DataFrame) -> pl.DataFrame:
    dv = (pl.col("close") * pl.col("volume")).drop_nulls()
    return p.group_by("date").agg(dv.alias("volume")).with_columns(
        pl.when(pl.col("volume").list.len() > 0).then(pl.col("volume").list.sum()).alias("volume")
    )


def _as_bars(levels: pl.DataFrame, index_symbol: str) -> pl.DataFrame:
    return levels.select(
        pl.lit(index_symbol).alias("symbol"),
        "date",
        *[pl.col("level").alias(c) for c in ("open", "high", "low", "close", "adj_close")],
        "volume",
    ).cast(BAR_SCHEMA)


def build_crypto_indices(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    *,
    majors: Sequence[str] = DEFAULT_MAJORS,
    stablecoins: Sequence[str] = DEFAULT_STABLECOINS,
    base_level: float = 100.0,
    alts_symbol: str = "ALTS",
    majors_symbol: str = "MAJORS",
    alts_dv_symbol: str | None = "ALTS_DV",
    previous_bars: pl.DataFrame | None = None,
    since: date | None = None,
) -> CryptoIndices:
    """ALTS, MAJORS and ALTS_DV bars, their asset rows and their membership.

    An index without any bar (no member has two consecutive closes) gets no
    asset row either, so downstream marts never list an empty index. Its
    members are still recorded: they describe the rule, not the data.
    ``alts_dv_symbol=None`` leaves the dollar-volume variant out.

    ``previous_bars`` and ``since`` (an incremental run: only bars dated
    on/after ``since`` changed): each index keeps its previous bars before
    ``since`` and chains the rest from the last published level; an index
    without a usable published level is built whole. The result is the same,
    bit for bit.
    """
    members = index_members(
        assets,
        majors=majors,
        stablecoins=stablecoins,
        alts_symbol=alts_symbol,
        majors_symbol=majors_symbol,
        alts_dv_symbol=alts_dv_symbol,
    )
    builders = {EQUAL_WEIGHT_DAILY: equal_weight_index, DOLLAR_VOLUME_MONTHLY: dollar_volume_index}
    chained = {EQUAL_WEIGHT_DAILY: equal_weight_index_since, DOLLAR_VOLUME_MONTHLY: dollar_volume_index_since}
    names = {
        alts_symbol: "Altcoins equal-weight index",
        majors_symbol: "BTC + ETH equal-weight index",
        alts_dv_symbol: "Altcoins dollar-volume-weighted index",
    }
    prev = None
    if previous_bars is not None and since is not None:
        symbols = members["index_symbol"].unique().to_list()
        prev = previous_bars.filter(pl.col("symbol").is_in(symbols)).select(list(BAR_SCHEMA))
        prev = prev.cast(BAR_SCHEMA)
    bars, asset_rows = [], []
    for (index_symbol, method), group in members.group_by("index_symbol", "method", maintain_order=True):
        ms = group.get_column("member_symbol").to_list()
        new = None
        if prev is not None and since is not None:
            mine = prev.filter(pl.col("symbol") == index_symbol)
            new = chained[method](prices, ms, index_symbol, mine, since)
            if new is not None:
                new = pl.concat([mine.filter(pl.col("date") < since).sort("date"), new])
        b = new if new is not None else builders[method](prices, ms, index_symbol, base_level=base_level)
        if b.is_empty():
            continue
        bars.append(b)
        quotes = assets.filter(pl.col("symbol").is_in(ms)).get_column("quote_currency").drop_nulls().unique()
        asset_rows.append(
            {
                "symbol": index_symbol,
                "name": names[index_symbol],
                "asset_class": "index_crypto",
                "sector": None,
                "industry": None,
                # Only a single shared quote currency makes the level meaningful in it.
                "quote_currency": quotes.item() if quotes.len() == 1 else None,
                "source": "derived",
                "source_symbol": index_symbol,
            }
        )
    return CryptoIndices(
        bars=pl.concat(bars).sort("symbol", "date") if bars else pl.DataFrame(schema=BAR_SCHEMA),
        assets=pl.DataFrame(asset_rows, schema=DIM_ASSET.polars_schema).sort("symbol"),
        members=members,
    )
