"""``merge_published``: the screen of the re-read year files and the published run's earlier bars
and quarantine rows give exactly one screen of the whole lake, or a reason to read it all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from flows.calendar import sessions
from flows.rebuild_plan import LakeRead, merge_published
from warehouse.lake import BARS_SCHEMA
from warehouse.quality import quarantine_keys, screen

AS_OF = date(2018, 6, 29)
CHANGED_FROM = date(2018, 1, 1)
ASSETS = pl.DataFrame({"symbol": ["AAA", "BBB", "CCC"], "asset_class": ["equity"] * 3})
BOUNDS = {"equity": 3.0}


def bars(spikes: dict[str, list[date]], saturday: date) -> pl.DataFrame:
    """Three stocks on every session 2016..AS_OF; a x10 bar on each spike date (the next bar
    reverts it); AAA also on ``saturday``."""
    days = sessions(date(2016, 1, 4), AS_OF).to_list()
    frames = []
    for i, symbol in enumerate(ASSETS["symbol"]):
        dates = days + ([saturday] if symbol == "AAA" else [])
        close = [100.0 + i + k * 0.01 for k in range(len(dates))]
        close = [c * 10 if d in spikes.get(symbol, []) else c for c, d in zip(close, dates, strict=True)]
        frames.append(pl.DataFrame({
            "symbol": symbol, "date": dates, "open": close, "high": close, "low": close, "close": close,
            "adj_close": close, "volume": 1.0, "source": "files", "ingested_at": datetime(2018, 1, 1, tzinfo=UTC),
            "origin": [f"{symbol}.csv line {k + 2}" for k in range(len(dates))],
        }))
    return pl.concat(frames).select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()]).sort("symbol", "date")


def files_of(stored: pl.DataFrame) -> pl.DataFrame:
    return stored.select("symbol", pl.col("date").dt.year().cast(pl.Int32).alias("year")).unique().with_columns(
        pl.lit("p").alias("path"), pl.lit(0, pl.Int64).alias("ctime_ns"))


@dataclass(frozen=True)
class Screens:
    """One screen of the whole lake (``clean_all``, ``q_all``), the bounded read of the
    ``plan`` (files from 2017 on, symbols in ``whole`` whole) and its screen (``clean``, ``q``),
    and the first screen's bars before 2018 as the ``published`` ones."""

    clean_all: pl.DataFrame
    q_all: pl.DataFrame
    plan: LakeRead
    read: pl.DataFrame
    clean: pl.DataFrame
    q: pl.DataFrame
    published: pl.DataFrame

    def merge(self, files: pl.DataFrame, published: pl.DataFrame | None = None):
        published = self.published if published is None else published
        return merge_published(self.plan, files, self.read, self.clean, self.q, published,
                               quarantine_keys(self.q_all), AS_OF)


def screens(lake: pl.DataFrame, whole: frozenset[str] = frozenset(), assets: pl.DataFrame = ASSETS) -> Screens:
    kw = {"sessions": sessions(lake["date"].min(), AS_OF), "assets": assets, "jump_bounds": BOUNDS}
    clean_all, q_all = screen("fact_prices", lake, AS_OF, **kw)
    plan = LakeRead([], CHANGED_FROM, whole, "run-1")
    read = lake.filter((pl.col("date") >= plan.context_from) | pl.col("symbol").is_in(sorted(whole)))
    clean, q = screen("fact_prices", read, AS_OF, **kw)
    return Screens(clean_all, q_all, plan, read, clean, q, clean_all.filter(pl.col("date") < CHANGED_FROM))


def split_screen(lake: pl.DataFrame, whole: frozenset[str] = frozenset()):
    """(one screen of ``lake``, ``merge_published`` of the bounded read's screen and the published bars)."""
    s = screens(lake, whole)
    return (s.clean_all, s.q_all), s.merge(files_of(lake))


def test_the_merge_equals_one_screen_of_the_whole_lake():
    lake = bars({"AAA": [date(2016, 5, 10), date(2017, 3, 14)], "BBB": [date(2018, 2, 6)],
                 "CCC": [date(2016, 12, 30)]}, saturday=date(2016, 3, 12))
    (clean_all, q_all), merged = split_screen(lake)
    assert not isinstance(merged, str), merged
    prices, quarantine = merged
    assert q_all.height == 9  # four spikes, each by both jump rules, and the Saturday bar
    assert_frame_equal(prices, clean_all, check_exact=True)
    assert_frame_equal(quarantine, q_all, check_exact=True)


def test_a_symbol_read_whole_is_screened_whole():
    lake = bars({"AAA": [date(2016, 5, 10), date(2017, 1, 3)], "CCC": [date(2017, 1, 10)]}, saturday=date(2016, 3, 12))
    (clean_all, q_all), merged = split_screen(lake, whole=frozenset({"AAA"}))
    assert not isinstance(merged, str), merged
    assert_frame_equal(merged[0], clean_all, check_exact=True)
    assert_frame_equal(merged[1], q_all, check_exact=True)


def test_a_start_bar_the_context_cannot_judge_reads_the_whole_lake():
    """A spike on the first session of the context year has no earlier bar in the read files:
    that screen keeps it, the whole one does not, and the published run never had it."""
    lake = bars({"CCC": [date(2017, 1, 3)]}, saturday=date(2016, 3, 12))
    _, merged = split_screen(lake)
    assert merged == "the published bar of CCC on 2017-01-03 is not the stored one"


def test_a_symbol_without_two_clean_bars_in_the_context_year_reads_the_whole_lake():
    lake = bars({}, saturday=date(2016, 3, 12))
    lake = lake.filter(~((pl.col("symbol") == "BBB") & pl.col("date").is_between(date(2016, 6, 1), date(2017, 12, 31))))
    _, merged = split_screen(lake)
    assert merged == "1 symbol(s) without two clean bars in 2017 to start the screen from, e.g. BBB"


def test_a_published_year_without_its_file_reads_the_whole_lake():
    lake = bars({}, saturday=date(2016, 3, 12))
    files = files_of(lake).filter(~((pl.col("symbol") == "BBB") & (pl.col("year") == 2016)))
    merged = screens(lake).merge(files)
    assert merged == "the lake no longer holds BBB's 2016 file the published run read"


def test_published_bars_in_another_row_order_merge_the_same_and_a_missing_year_file_is_still_found():
    # merge_published tells a kept bar's (symbol, year) pairs by where they change from the row
    # before: published bars not sorted by symbol and date (a warehouse rewritten in another
    # order) must neither change the merge nor hide a year file the lake no longer holds.
    lake = bars({"AAA": [date(2016, 5, 10)], "CCC": [date(2017, 3, 14)]}, saturday=date(2016, 3, 12))
    s = screens(lake)
    shuffled = s.published.sort("date", "symbol", descending=[True, False])
    merged = s.merge(files_of(lake))
    reordered = s.merge(files_of(lake), shuffled)
    assert not isinstance(merged, str)
    assert_frame_equal(reordered[0], merged[0])
    assert_frame_equal(reordered[1], merged[1])
    assert_frame_equal(merged[0], s.clean_all)
    files = files_of(lake).filter(~((pl.col("symbol") == "CCC") & (pl.col("year") == 2016)))
    missing = s.merge(files, shuffled)
    assert missing == "the lake no longer holds CCC's 2016 file the published run read"
    # A later year of a symbol (not where its rows start) in either order.
    files = files_of(lake).filter(~((pl.col("symbol") == "CCC") & (pl.col("year") == 2017)))
    for order in (s.published, shuffled):
        missing = s.merge(files, order)
        assert missing == "the lake no longer holds CCC's 2017 file the published run read"


def test_a_symbol_not_read_is_kept_whole_and_chunked_published_bars_merge_the_same():
    # merge_published slices each symbol's run of the published bars (sorted by symbol and
    # date): a symbol the run did not read (DDD, whose bars end in 2016) is kept whole, and
    # published bars in many chunks (as DuckDB hands them over) merge as one frame would.
    assets = pl.concat([ASSETS, pl.DataFrame({"symbol": ["DDD"], "asset_class": ["equity"]})])
    lake = bars({"AAA": [date(2016, 5, 10)], "BBB": [date(2017, 6, 6)]}, saturday=date(2016, 3, 12))
    ddd = lake.filter((pl.col("symbol") == "CCC") & (pl.col("date") < date(2017, 1, 1))).with_columns(
        pl.lit("DDD").alias("symbol"))
    lake = pl.concat([lake, ddd]).sort("symbol", "date")
    s = screens(lake, assets=assets)
    chunked = pl.concat([s.published.slice(k, 97) for k in range(0, s.published.height, 97)], rechunk=False)
    assert chunked.n_chunks() > 1
    for given in (s.published, chunked):
        merged = s.merge(files_of(lake), given)
        assert not isinstance(merged, str), merged
        assert_frame_equal(merged[0], s.clean_all, check_exact=True)
        assert merged[0].n_chunks() == 1
        assert_frame_equal(merged[1], s.q_all, check_exact=True)
    assert "DDD" in merged[0]["symbol"] and "DDD" not in s.read["symbol"]


def test_every_symbol_read_whole_keeps_no_published_bar():
    lake = bars({"AAA": [date(2016, 5, 10)], "CCC": [date(2017, 1, 10)]}, saturday=date(2016, 3, 12))
    (clean_all, q_all), merged = split_screen(lake, whole=frozenset(ASSETS["symbol"]))
    assert not isinstance(merged, str), merged
    assert_frame_equal(merged[0], clean_all, check_exact=True)
    assert_frame_equal(merged[1], q_all, check_exact=True)


# A few days' context (``LakeRead.context_start``): the first changed date known to the day.
CHANGED_DAY = date(2018, 3, 7)
SHORT = CHANGED_DAY - timedelta(days=14)


def short_screens(lake: pl.DataFrame, withdrawn: frozenset[str] = frozenset()) -> Screens:
    kw = {"sessions": sessions(lake["date"].min(), AS_OF), "assets": ASSETS, "jump_bounds": BOUNDS}
    clean_all, q_all = screen("fact_prices", lake, AS_OF, **kw)
    plan = LakeRead([], CHANGED_DAY, frozenset(), "run-1", SHORT, withdrawn)
    read = lake.filter(pl.col("date") >= SHORT)
    clean, q = screen("fact_prices", read, AS_OF, **kw)
    return Screens(clean_all, q_all, plan, read, clean, q, clean_all.filter(pl.col("date") < CHANGED_DAY))


def test_a_few_days_context_merges_to_one_screen_of_the_whole_lake():
    # Spikes just before the context, on its second session, and on the changed date.
    lake = bars({"AAA": [SHORT - timedelta(days=1), date(2017, 3, 14)], "BBB": [date(2018, 2, 22)],
                 "CCC": [CHANGED_DAY]}, saturday=date(2016, 3, 12))
    s = short_screens(lake)
    assert s.plan.context_from == SHORT
    merged = s.merge(files_of(lake))
    assert not isinstance(merged, str), merged
    assert_frame_equal(merged[0], s.clean_all, check_exact=True)
    assert_frame_equal(merged[1], s.q_all, check_exact=True)


def test_a_spike_at_the_few_days_contexts_start_is_told_apart():
    lake = bars({"BBB": [date(2018, 2, 21)]}, saturday=date(2016, 3, 12))  # SHORT: Wednesday 21 February
    assert SHORT == date(2018, 2, 21)
    merged = short_screens(lake).merge(files_of(lake))
    assert merged == "the published bar of BBB on 2018-02-21 is not the stored one"


def test_one_clean_bar_in_the_few_days_context_is_told_apart():
    lake = bars({}, saturday=date(2016, 3, 12))
    lake = lake.filter(~((pl.col("symbol") == "CCC") & pl.col("date").is_between(SHORT, CHANGED_DAY - timedelta(days=2))))
    merged = short_screens(lake).merge(files_of(lake))
    assert merged == "1 symbol(s) without two clean bars in 2018-02-21 to 2018-03-07 to start the screen from, e.g. CCC"


def test_a_symbol_withdrawn_from_with_no_bar_left_in_the_context_is_not_kept_whole():
    """CCC's bars from the context on were withdrawn: none is read, yet its published bars there
    (the withdrawn ones) must not be kept."""
    lake = bars({}, saturday=date(2016, 3, 12)).filter(~((pl.col("symbol") == "CCC") & (pl.col("date") >= SHORT)))
    assert not isinstance(short_screens(lake).merge(files_of(lake)), str)
    merged = short_screens(lake, withdrawn=frozenset({"CCC"})).merge(files_of(lake))
    assert merged == "1 symbol(s) without two clean bars in 2018-02-21 to 2018-03-07 to start the screen from, e.g. CCC"
