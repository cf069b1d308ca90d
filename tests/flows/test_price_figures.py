"""``flows.price_figures.price_figures_from``: the figures a run states on the whole of fact_prices
(stale assets, the audit's gap and split-like warnings, the report's freshness), taken from the
run's tail and a real published warehouse's rows before ``since``, equal the figures of the whole
table (``stale_symbols``, ``warehouse.audit.price_warnings``, ``freshness`` on every bar).

The published warehouses are built and published as a run does (``warehouse.build.build_database``,
``warehouse.snapshots``), with rows from ``since`` on that differ from the new tail (a run that
rebuilds from ``since`` replaces them), so a figure that read them would differ.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from functools import partial

import polars as pl
import pytest

from contracts.tables import TABLES
from flows.artifacts import freshness, stale_symbols
from flows.calendar import sessions as exchange_sessions
from flows.price_figures import MOVES_STATE, price_figures, price_figures_from
from flows.settings import Settings
from warehouse import snapshots
from warehouse.audit import price_warnings
from warehouse.build import build_database

FIRST, AS_OF = date(2025, 1, 2), date(2025, 12, 19)
ASSETS = pl.DataFrame({
    "symbol": ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH", "BTC", "ETH", "ALTS", "^RUT"],
    "asset_class": ["equity"] * 8 + ["crypto", "crypto", "index_crypto", "index"],
})


def _days(symbol: str, first: date, last: date) -> list[date]:
    cls = ASSETS.filter(pl.col("symbol") == symbol)["asset_class"].item()
    if cls in ("crypto", "index_crypto"):
        return pl.date_range(first, last, eager=True).to_list()
    return exchange_sessions(first, last).to_list()


def _bars(symbol: str, days: list[date], closes: list[float], source: str, hour: int = 22) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": symbol, "date": days, "open": closes, "high": closes, "low": closes, "close": closes,
        "adj_close": closes, "volume": 1.0, "source": source,
        "ingested_at": [datetime(d.year, d.month, d.day, hour, tzinfo=UTC) for d in days],
    }, schema_overrides={"date": pl.Date})


def _panel(rng: random.Random, since: date) -> pl.DataFrame:
    """Every kind of history the rules look at, around ``since``: gaps before and after it, a
    split-like move before, at and after it, a symbol that ends before it, one that starts after it,
    derived bars, a symbol with no bar at all before it."""
    frames = []
    for symbol in ASSETS["symbol"]:
        first = FIRST + timedelta(days=rng.randrange(0, 40))
        last = AS_OF - timedelta(days=rng.choice([0, 0, 0, 3]))
        if symbol == "DDD":  # stale: its last bar long before since
            last = since - timedelta(days=rng.randrange(20, 80))
        if symbol == "EEE":  # new: first bar at or after since
            first = since + timedelta(days=rng.randrange(0, 3))
        days = _days(symbol, first, last)
        if not days:
            continue
        # Gaps: a few dates dropped anywhere (before and after since, and right before it).
        drop = set(rng.sample(days, k=min(len(days) - 1, rng.randrange(0, 4))))
        if symbol in ("BBB", "BTC") and rng.random() < 0.7:
            drop |= {d for d in days if since - timedelta(days=4) <= d < since}
        days = [d for d in days if d not in drop or d == days[-1]]
        closes, level = [], 100.0
        moves = set(rng.sample(range(1, len(days)), k=min(len(days) - 1, rng.randrange(0, 3)))) if len(days) > 1 else set()
        boundary = next((i for i, d in enumerate(days) if d >= since), None)
        if symbol in ("AAA", "FFF", "BTC") and boundary and rng.random() < 0.8:
            moves.add(boundary)  # a move from the last earlier bar to the first tail bar
        for i, _ in enumerate(days):
            if i in moves:
                level *= rng.choice([0.05, 20.0, 0.09, 11.0])
            closes.append(level * (1 + rng.uniform(-0.02, 0.02)))
        source = "derived" if symbol == "ALTS" else "files"
        frames.append(_bars(symbol, days, closes, source))
    return TABLES["fact_prices"].conform(pl.concat(frames))


def _publish(data_dir, fact_prices: pl.DataFrame, state: dict, run_id: str = "r1") -> None:
    staging = snapshots.stage(data_dir, run_id)
    build_database(staging.warehouse_path, {"fact_prices": fact_prices})
    staging.write_state(state)
    snapshots.publish(data_dir, staging, run_id)


def _whole_figures(whole: pl.DataFrame, settings: Settings):
    """The figures stated on every bar, as the run stated them before it handed on tails."""
    if whole.is_empty():
        return [], [], ([], [])
    return (
        stale_symbols(whole, ASSETS, AS_OF, exchange_sessions(whole["date"].min(), AS_OF), settings.stale_after_sessions),
        price_warnings(whole, ASSETS, AS_OF, partial(exchange_sessions, code=settings.exchange_calendar)),
        freshness(whole, ASSETS),
    )


def _replaced(rows: pl.DataFrame) -> pl.DataFrame:
    """The published run's rows from since on, as another run had them: other closes (a 50x
    move on its first bar), other ingested_at, a symbol the new run no longer has."""
    return rows.with_columns(
        (pl.col("adj_close") * pl.when(pl.col("date") == pl.col("date").min().over("symbol")).then(50.0).otherwise(1.0)),
        pl.col("ingested_at") + pl.duration(days=400),
    )


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("carried", [True, False], ids=["moves-carried", "moves-from-bars"])
def test_figures_from_the_tail_and_the_published_rows_equal_the_whole_tables(tmp_path, seed, carried):
    rng = random.Random(seed)
    since = AS_OF - timedelta(days=rng.choice([1, 5, 30, 120]))
    whole = _panel(rng, since)
    settings = Settings(data_dir=tmp_path)
    earlier, tail = whole.filter(pl.col("date") < since), whole.filter(pl.col("date") >= since)
    published = pl.concat([earlier, _replaced(tail)])
    state = {"as_of": str(AS_OF)}
    if carried:  # the published run's own state: the moves of its whole table
        price_figures_from(published, None, ASSETS, AS_OF, settings, state=state)
    _publish(tmp_path, published, state)
    state_now: dict = {}
    got = price_figures_from(tail, since, ASSETS, AS_OF, settings, state=state_now)
    want = _whole_figures(whole, settings)
    assert got == want
    assert price_figures(whole, ASSETS, AS_OF, settings) == want
    # This run's state carries the moves of its whole table (what a full build would carry).
    full_state: dict = {}
    price_figures_from(whole, None, ASSETS, AS_OF, settings, state=full_state)
    assert state_now[MOVES_STATE] == full_state[MOVES_STATE]
    assert json.loads(json.dumps(state_now[MOVES_STATE])) == state_now[MOVES_STATE]


def test_the_panel_states_what_the_test_means_to_check(tmp_path):
    """The generated panels hit each case the property test claims: gaps, split-like moves before and
    at since, a stale symbol, and figures that differ from the tail's own."""
    seen = {"gaps": 0, "split": 0, "stale": 0, "boundary_move": 0, "earlier_only_differs": 0}
    settings = Settings(data_dir=tmp_path)
    for seed in range(12):
        rng = random.Random(seed)
        since = AS_OF - timedelta(days=rng.choice([1, 5, 30, 120]))
        whole = _panel(rng, since)
        stale, warnings, _ = _whole_figures(whole, settings)
        tail = whole.filter(pl.col("date") >= since)
        seen["gaps"] += any(w.startswith("gaps:") for w in warnings)
        seen["split"] += any(w.startswith("possible unadjusted split") for w in warnings)
        seen["stale"] += any(s["symbol"] == "DDD" for s in stale)
        seen["boundary_move"] += any(str(tail.filter(pl.col("symbol") == s)["date"].min()) in " ".join(warnings)
                                     for s in ("AAA", "FFF"))
        seen["earlier_only_differs"] += _whole_figures(tail, settings) != (stale, warnings, _whole_figures(whole, settings)[2])
    assert all(seen.values()), seen


def test_the_earlier_rows_share_is_taken(tmp_path):
    """Gaps, a split-like move and a stale symbol only before since: the tail alone states none of
    them; the figures from the tail and the published rows state them all."""
    since = date(2025, 12, 1)
    aaa_days = _days("AAA", date(2025, 6, 2), AS_OF)
    aaa = _bars("AAA", aaa_days, [10.0 if d < date(2025, 9, 2) else 200.0 for d in aaa_days], "files")
    btc_days = [d for d in _days("BTC", date(2025, 6, 1), AS_OF) if d != date(2025, 7, 4)]
    btc = _bars("BTC", btc_days, [1.0] * len(btc_days), "files")
    ddd_days = _days("DDD", date(2025, 6, 2), date(2025, 10, 1))
    ddd = _bars("DDD", ddd_days, [5.0] * len(ddd_days), "files")
    whole = TABLES["fact_prices"].conform(pl.concat([aaa, btc, ddd]))
    tail = whole.filter(pl.col("date") >= since)
    settings = Settings(data_dir=tmp_path)
    _publish(tmp_path, whole.filter(pl.col("date") < since), {"as_of": str(since - timedelta(days=1))})
    stale, warnings, fresh = price_figures_from(tail, since, ASSETS, AS_OF, settings)
    assert (stale, warnings, fresh) == _whole_figures(whole, settings)
    assert [s["symbol"] for s in stale] == ["DDD"]
    assert warnings == [
        "gaps: 1 symbol(s) miss expected dates: BTC (1, first 2025-07-04)",
        ("possible unadjusted split (90%+ one-day move in adj_close, kept, please check the source): "
        "AAA 2025-09-02 (+1900%)"),
    ]
    assert [r["symbol"] for r in fresh[1]] == ["DDD"]
    # The tail alone states none of it.
    alone = price_figures(tail, ASSETS, AS_OF, settings)
    assert alone[0] == [] and alone[1] == [] and alone[2][1] == []


def test_the_published_runs_carried_moves_are_used_and_cut_at_since(tmp_path):
    """The moves the published run's state carries stand for its bars' moves (not found again):
    a move recorded there before since is stated, one from since on (the run replaces those rows) is not."""
    since = date(2025, 12, 1)
    days = _days("AAA", date(2025, 6, 2), AS_OF)
    whole = TABLES["fact_prices"].conform(_bars("AAA", days, [10.0] * len(days), "files"))
    recorded = [["AAA", "2025-08-01", math.log(30.0)], ["AAA", "2025-12-05", math.log(40.0)]]
    _publish(tmp_path, whole.filter(pl.col("date") < since), {"as_of": "2025-11-28", MOVES_STATE: recorded})
    state: dict = {}
    _, warnings, _ = price_figures_from(whole.filter(pl.col("date") >= since), since, ASSETS, AS_OF, Settings(data_dir=tmp_path), state=state)
    assert warnings == [("possible unadjusted split (90%+ one-day move in adj_close, kept, please check the source): "
                        "AAA 2025-08-01 (+2900%)")]
    assert state[MOVES_STATE] == recorded[:1]


def test_an_empty_tail_and_a_full_build(tmp_path):
    rng = random.Random(3)
    since = AS_OF - timedelta(days=5)
    whole = _panel(rng, since)
    settings = Settings(data_dir=tmp_path)
    earlier = whole.filter(pl.col("date") < since)
    _publish(tmp_path, earlier, {"as_of": str(AS_OF)})
    # Nothing from since on: the figures are the earlier rows'.
    assert price_figures_from(whole.clear(), since, ASSETS, AS_OF, settings) == _whole_figures(earlier, settings)
    # since=None: the tail is the whole table.
    assert price_figures_from(whole, None, ASSETS, AS_OF, settings) == _whole_figures(whole, settings)
    assert price_figures_from(whole.clear(), None, ASSETS, AS_OF, settings) == ([], [], ([], []))


def test_bars_after_the_as_of_before_since_count_for_freshness_not_for_gaps(tmp_path):
    """Published bars after the as-of and before since (a since past the as-of): the gap rule
    counts the bars up to the as-of only, stale assets and freshness every bar."""
    since = AS_OF + timedelta(days=4)
    btc_days = [d for d in _days("BTC", date(2025, 11, 1), AS_OF + timedelta(days=2)) if d != AS_OF]
    aaa_days = _days("AAA", date(2025, 11, 3), AS_OF)
    whole = TABLES["fact_prices"].conform(pl.concat([
        _bars("BTC", btc_days, [1.0] * len(btc_days), "files"), _bars("AAA", aaa_days, [1.0] * len(aaa_days), "files"),
    ]))
    settings = Settings(data_dir=tmp_path)
    _publish(tmp_path, whole, {"as_of": str(AS_OF)})
    got = price_figures_from(whole.clear(), since, ASSETS, AS_OF, settings)
    assert got == _whole_figures(whole, settings)
    assert got[1] == []  # BTC's missing as-of is after its last bar up to the as-of: no gap


@pytest.mark.usefixtures("prefect_harness")
def test_real_files_next_day_figures_equal_a_full_runs(real_data, tmp_path, monkeypatch):
    """Real price files (^RUT since 1987, SPY, IWM, RTY=F, ^VIX; six coins since 2024-10) through the
    flow: the second night hands on fact_prices' tail and states the same stale assets, warnings
    on fact_prices and freshness as a full run as of the same day over the same lake; its state
    carries the same split-like moves."""
    import shutil

    import flows.nightly
    from flows.nightly import nightly

    folders = [real_data / "alitalbi-storage_data_fy", real_data / "Harthor-marketlab"]
    for folder in folders:
        if not folder.exists():
            pytest.skip(f"{folder} absent (see ../shared/data/real/SOURCES.md)")
    built = []
    real = flows.nightly.transform
    monkeypatch.setattr(flows.nightly, "transform", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    paths = [str(f) for f in folders]
    data = tmp_path / "data"
    first, second = date(2026, 1, 26), date(2026, 1, 28)
    nightly(source="files", paths=paths, as_of=first, data_dir=str(data))
    assert MOVES_STATE in json.loads((data / "current" / "run.json").read_text())
    run = nightly(source="files", paths=paths, as_of=second, data_dir=str(data))
    assert run.incremental_from == first + timedelta(days=1)
    tail = built[-1]
    assert tail.unchanged_before.get("fact_prices") == first + timedelta(days=1)
    whole = tmp_path / "whole"
    shutil.copytree(data / "lake", whole / "lake")
    full = nightly(source="files", paths=paths, as_of=second, data_dir=str(whole))
    assert full.incremental_from is None
    assert (tail.stale, tail.price_warnings, tail.freshness) == (built[-1].stale, built[-1].price_warnings, built[-1].freshness)
    assert tail.freshness[0], "the real files give every source's newest bar"
    assert tail.state[MOVES_STATE] == built[-1].state[MOVES_STATE]


@pytest.mark.parametrize("carried", [{"a": 1}, [["AAA"]], [["AAA", "not a date", 1.0]], [[1, "2025-08-01", "x"]]])
def test_carried_moves_a_run_did_not_write_are_found_again_from_the_bars(tmp_path, carried):
    since = date(2025, 12, 1)
    days = _days("AAA", date(2025, 6, 2), AS_OF)
    whole = TABLES["fact_prices"].conform(_bars("AAA", days, [10.0 if d < date(2025, 9, 2) else 200.0 for d in days], "files"))
    _publish(tmp_path, whole.filter(pl.col("date") < since), {"as_of": "2025-11-28", MOVES_STATE: carried})
    settings = Settings(data_dir=tmp_path)
    assert price_figures_from(whole.filter(pl.col("date") >= since), since, ASSETS, AS_OF, settings) == _whole_figures(whole, settings)
