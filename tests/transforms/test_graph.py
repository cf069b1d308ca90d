"""The mart graph: declared once, walked by one assembler for full and incremental builds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.panels import generate
from flows.policy import load_policy
from transforms.graph import (
    BASE_INPUTS,
    GRAPH,
    Built,
    Node,
    assemble,
    full_build_reason,
    levels,
    producers,
    seed_reads,
    seed_tables,
)
from transforms.marts import MartParams, build_marts, serial_map
from contracts.schema import Column, Table, strictly_increasing
from contracts.tables import TABLES

AS_OF = date(2026, 11, 20)
PARAMS = MartParams(policy=load_policy(), correlation_block_size=5)
# Tables the run writes itself, not built from prices.
NOT_BUILT = {"pipeline_runs", "ingest_log", "quarantine"}


@pytest.fixture(scope="module")
def panel():
    prices, assets, sessions = generate(12, 14, 2, AS_OF, 7)
    return prices, assets, sessions.sort()


def as_of(prices, sessions, d):
    return prices.filter(pl.col("date") <= d), sessions.filter(sessions <= d)


def test_every_contracted_table_is_built_by_exactly_one_node():
    made = producers(GRAPH)  # raises if two nodes produce one table
    built = {t for t in made if not t.startswith("_")}
    assert built == set(TABLES) - NOT_BUILT
    assert sum(len(n.produces) for n in GRAPH) == len(made)
    # Every node reads base inputs or tables a node produces.
    assert all(t in made or t in BASE_INPUTS for n in GRAPH for t in n.inputs)


def test_the_graph_is_acyclic_and_levels_follow_dependencies():
    order = {n.name: i for i, level in enumerate(levels(GRAPH)) for n in level}
    assert set(order) == {n.name for n in GRAPH}
    made = producers(GRAPH)
    for node in GRAPH:
        for t in node.inputs:
            if t in made and made[t] is not node:
                assert order[made[t].name] < order[node.name], (node.name, t)
    # The heavy independent marts run together, alongside the correlations.
    assert {"correlation", "matrix", "milestones", "factors", "spillover"} <= {
        n.name for n in levels(GRAPH)[order["correlation"]]
    }
    noop = lambda inputs, params, since, previous: Built({})  # noqa: E731
    cycle = (Node("a", ("x",), ("y",), noop), Node("b", ("y",), ("x",), noop))
    with pytest.raises(ValueError, match="cycle"):
        levels(cycle)
    with pytest.raises(ValueError, match="produced by a and b"):
        producers((Node("a", ("x",), (), noop), Node("b", ("x",), (), noop)))
    with pytest.raises(ValueError, match="reads nope"):
        producers((Node("a", ("x",), ("nope",), noop),))


def test_seed_tables_are_the_nodes_previous_needs():
    seeds = seed_tables(GRAPH)
    assert set(seeds) == {t for n in GRAPH for t in n.previous}
    assert {"fact_prices", "fact_returns", "mart_rolling_correlation", "mart_correlation_matrix",
            "mart_correlation_events", "mart_factor_scores", "mart_spillover"} <= set(seeds)  # fmt: skip
    # Every seed is a table the graph builds (so a published run has it).
    assert set(seeds) <= set(producers(GRAPH))
    import flows.nightly

    assert not hasattr(flows.nightly, "SEED_TABLES"), "the flow reads the graph's seed tables, not a list of its own"


def test_seed_reads_bound_each_previous_table_as_its_nodes_declare():
    reads = seed_reads(GRAPH)
    assert set(reads) == set(seed_tables(GRAPH))
    # The indices node reads only the published index bars back, not the ~9 M lake bars.
    assert reads["fact_prices"] == (("source", "==", "derived"),)
    # A table passed on into a node's output (its rows before ``since`` kept) is read whole.
    assert reads["fact_returns"] is None and reads["mart_rolling_correlation"] is None
    # Two nodes reading one table differently: the read covers both (whole).
    other = Node("other", ("mart_other",), ("fact_prices",), lambda i, p, s, prev: Built({}), previous=("fact_prices",))
    assert seed_reads((*GRAPH, other))["fact_prices"] is None
    same = dataclasses.replace(other, previous_rows=(("fact_prices", (("source", "==", "derived"),)),))
    assert seed_reads((*GRAPH, same))["fact_prices"] == (("source", "==", "derived"),)


def test_seed_reads_bound_the_windows_nodes_declare_from_since(panel):
    _, _, sessions = panel
    params = dataclasses.replace(PARAMS, factors=True)
    since = sessions[-1]
    reads = seed_reads(GRAPH, sessions=sessions, params=params, since=since)
    before = {n: sessions[sessions.len() - 1 - n] for n in (1, max(params.factor_horizons))}
    # Read from since: nothing of the previous returns or factor metrics is needed (only their tails are built).
    assert reads["fact_returns"] == (("session_date", ">=", since),)
    assert reads["mart_factor_metrics"] == (("date", ">=", since),)
    # The factor scores from the longest IC horizon before it; the matrix and spillover
    # marts from the previous latest session (the one publish date that can drop).
    assert reads["mart_factor_scores"] == (("date", ">=", before[max(params.factor_horizons)]),)
    for t in ("mart_correlation_matrix", "mart_spillover", "mart_lead_lag", "mart_spillover_index"):
        assert reads[t] == (("date", ">=", before[1]),), t
    # Declared conditions stay; tables no node bounds are read whole.
    assert reads["fact_prices"] == (("source", "==", "derived"),)
    assert reads["mart_rolling_correlation"] is None and reads["mart_factor_ic"] is None
    # A window reaching before the first session: whole.
    assert seed_reads(GRAPH, sessions=sessions, params=params, since=sessions[10])["mart_factor_scores"] is None
    # Two readers with windows: the earlier bound; one reading whole: whole.
    wider = Node("wider", ("mart_w",), ("fact_returns",), lambda i, p, s, prev: Built({}), previous=("fact_returns",),
                 previous_window=(("fact_returns", lambda p: 3),))
    assert seed_reads((*GRAPH, wider), sessions=sessions, params=params, since=since)["fact_returns"] == (
        ("session_date", ">=", sessions[sessions.len() - 4]),)
    whole = dataclasses.replace(wider, previous_window=())
    assert seed_reads((*GRAPH, whole), sessions=sessions, params=params, since=since)["fact_returns"] is None


def test_the_indices_node_gets_only_the_derived_bars_and_builds_as_from_the_whole_table(panel):
    prices, assets, sessions = panel
    # As a run reads them from the lake: the index bars are then "derived" in fact_prices.
    prices = prices.with_columns(pl.lit("sample").alias("source"), pl.lit(datetime(2026, 11, 21, tzinfo=UTC)).alias("ingested_at"))
    params = dataclasses.replace(PARAMS, factors=False)
    prev = sessions[-2]
    pp, ps = as_of(prices, sessions, prev)
    previous = assemble(pp, assets, ps, params).tables
    (column, _, value), = seed_reads(GRAPH)["fact_prices"]
    bounded = previous | {"fact_prices": previous["fact_prices"].filter(pl.col(column) == value)}
    assert 0 < bounded["fact_prices"].height < previous["fact_prices"].height / 5
    received = []

    def spy(inputs, params, since, prev_tables):
        received.append(prev_tables["fact_prices"])
        return GRAPH[0].build(inputs, params, since, prev_tables)

    graph = (dataclasses.replace(GRAPH[0], build=spy), *GRAPH[1:])
    since = prev + timedelta(days=1)
    whole = assemble(prices, assets, sessions, params, since=since, previous=previous)
    inc = assemble(prices, assets, sessions, params, since=since, previous=bounded, graph=graph)
    assert received and received[0]["source"].unique().to_list() == ["derived"]
    assert received[0].height == bounded["fact_prices"].height
    full = assemble(prices, assets, sessions, params)
    assert whole.unchanged_before == inc.unchanged_before and "fact_prices" in inc.unchanged_before
    for name in full.tables:
        keys = [c for c in full.tables[name].columns if full.tables[name][c].dtype != pl.Float64]
        want = full.tables[name]
        if name in inc.unchanged_before:  # handed on as its tail (Marts.unchanged_before)
            want = want.filter(pl.col(TABLES[name].date_column) >= inc.unchanged_before[name])
        for other in (whole, inc):
            assert_frame_equal(other.tables[name].sort(keys, nulls_last=True),
                               want.sort(keys, nulls_last=True), check_exact=True)


def test_full_build_reason_is_derived_from_requires_and_lookback(panel):
    prices, assets, sessions = panel
    previous = {t: pl.DataFrame() for t in seed_tables(GRAPH)}
    assert full_build_reason(sessions, PARAMS, sessions[-1], previous) is None
    required = {t for n in GRAPH for t in n.requires}
    assert required == {"fact_prices", "fact_returns", "mart_rolling_correlation", "mart_correlation_matrix"}
    for t in required:
        reason = full_build_reason(sessions, PARAMS, sessions[-1], {k: v for k, v in previous.items() if k != t})
        assert reason is not None and t in reason
    # Optional seeds: the node builds that part in full itself.
    assert full_build_reason(sessions, PARAMS, sessions[-1], {k: previous[k] for k in required}) is None
    lookback = max(PARAMS.windows) + 21
    assert full_build_reason(sessions, PARAMS, sessions[lookback], previous) is not None
    assert full_build_reason(sessions, PARAMS, sessions[lookback + 1], previous) is None


def test_named_partitions_reach_the_runner(panel):
    prices, assets, sessions = panel
    seen: list[list[str]] = []

    def naming_map(fn, arg_list, names):
        seen.append(list(names))
        return serial_map(fn, arg_list)

    build_marts(prices, assets, sessions, PARAMS, map_partitions=naming_map)
    flat = [n for level in seen for n in level]
    assert flat[:2] == ["indices", "returns"] and flat[-1] == "allocation"
    assert [n for n in flat if n.startswith("matrix")] == [f"matrix-{i}of4" for i in range(1, 5)]
    blocks = [n for n in flat if n.startswith("correlation")]
    assert len(blocks) > 1 and blocks[0] == f"correlation-1of{len(blocks)}"


# A toy mart added through the one place: a node. Each session's count of crypto returns.
def build_toy(inputs, params, since, previous) -> Built:
    returns = inputs["fact_returns"]
    crypto = inputs["dim_asset"].filter(pl.col("asset_class") == "crypto")["symbol"]
    counts = (
        returns.filter(pl.col("symbol").is_in(crypto.implode()) & pl.col("log_return").is_not_null())
        .group_by("session_date")
        .agg(pl.len().cast(pl.Int64).alias("crypto_returns"))
    )
    if since is None:
        return Built({"mart_toy": counts.sort("session_date")})
    # Its tail only (INTERFACE.md): the rows before ``since`` are the published ones.
    return Built({"mart_toy": counts.filter(pl.col("session_date") >= since).sort("session_date")},
                 unchanged_before={"mart_toy": since})


TOY = Node("toy", ("mart_toy",), ("fact_returns", "dim_asset"), build_toy, previous=("mart_toy",))
# Its contract (a new mart's other place): the date column its tail is handed on by.
TOY_TABLE = Table("mart_toy", "", (Column("session_date", "date", "", False), Column("crypto_returns", "int", "", False)),
                  primary_key=("session_date",), date_column="session_date")


def test_a_new_node_appears_in_full_and_incremental_builds(panel, monkeypatch):
    prices, assets, sessions = panel
    monkeypatch.setitem(TABLES, "mart_toy", TOY_TABLE)
    graph = (*GRAPH, TOY)
    assert "mart_toy" in seed_tables(graph)
    # Nothing reads it: it runs alongside the correlations.
    assert any({"toy", "correlation"} <= {n.name for n in level} for level in levels(graph))
    d, prev = sessions[-1], sessions[-2]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    params = dataclasses.replace(PARAMS, factors=False)
    previous = assemble(pp, assets, ps, params, graph=graph)
    full = assemble(p, assets, s, params, graph=graph)
    inc = assemble(p, assets, s, params, graph=graph, since=prev + timedelta(days=1), previous=previous.tables)
    assert set(full.tables) == set(inc.tables) == set(build_marts(p, assets, s, params).tables) | {"mart_toy"}
    since = prev + timedelta(days=1)
    assert inc.unchanged_before["mart_toy"] == since
    # Handed on as its tail (Marts.unchanged_before): the full build's rows from the day on.
    tail = full.tables["mart_toy"].filter(pl.col("session_date") >= since)
    assert_frame_equal(inc.tables["mart_toy"], tail, check_exact=True)
    assert full.tables["mart_toy"]["session_date"].max() == d and tail.height < full.tables["mart_toy"].height
    assert full.unchanged_before == {}


def test_a_node_returning_an_undeclared_table_is_an_error(panel):
    prices, assets, sessions = panel
    sloppy = Node("sloppy", ("mart_sloppy",), ("fact_returns",), lambda i, p, s, prev: Built({"mart_other": i["fact_returns"]}))
    with pytest.raises(ValueError, match="node sloppy returned mart_other, not declared"):
        assemble(prices, assets, sessions, dataclasses.replace(PARAMS, factors=False), graph=(*GRAPH, sloppy))


def _bars(rows):
    return pl.DataFrame(
        rows, schema={"symbol": pl.String, "date": pl.Date, "adj_close": pl.Float64}, orient="row"
    )


D = date(2026, 1, 5)
LAKE = _bars([("AAA", D, 1.0), ("AAA", D + timedelta(1), 2.0), ("BTC", D, 3.0), ("ZZZ", D, 4.0)])
INDEX = pl.DataFrame(
    {"symbol": ["ALTS", "ALTS", "MAJORS", "ZZZZ"], "date": [D, D + timedelta(1), D, D],
     "adj_close": [10.0, 11.0, 12.0, 13.0], "source": ["derived"] * 4},
)  # fmt: skip


@pytest.mark.parametrize(
    "bars, blocks",
    [
        (LAKE, INDEX),  # spliced: before, between and after the lake's symbols
        (LAKE, INDEX.head(0)),
        (LAKE.head(0), INDEX),
        (LAKE.reverse(), INDEX),  # not sorted: sorted as before
        (LAKE, INDEX.reverse()),
        (pl.concat([LAKE, LAKE.tail(1)]), INDEX),  # a repeated key: sorted as before
        (LAKE.with_columns(pl.col("symbol").replace("ZZZ", None)), INDEX),  # a null symbol
        (LAKE, INDEX.with_columns(pl.col("symbol").replace("ZZZZ", "AAA"))),  # a symbol in both
    ],
)
def test_index_bars_spliced_into_sorted_bars_equal_concat_and_sort(bars, blocks):
    from transforms.graph import with_blocks_in_order

    expected = pl.concat([bars, blocks], how="diagonal_relaxed").sort("symbol", "date", maintain_order=True)
    got = with_blocks_in_order(bars, blocks)
    assert_frame_equal(got, expected)
    assert got["symbol"].flags == expected["symbol"].flags  # sorted, as a sort leaves it
    assert strictly_increasing(got, ["symbol", "date"]) == strictly_increasing(expected, ["symbol", "date"])


def test_strictly_increasing_refuses_repeats_nulls_and_disorder():
    def strictly_sorted(frame):
        return strictly_increasing(frame, ["symbol", "date"])

    assert strictly_sorted(LAKE) and strictly_sorted(LAKE.head(1)) and strictly_sorted(LAKE.head(0))
    assert not strictly_sorted(pl.concat([LAKE, LAKE.tail(1)]))
    assert not strictly_sorted(LAKE.reverse())
    assert not strictly_sorted(LAKE.with_columns(pl.col("date").replace(D + timedelta(1), None)))
    assert not strictly_sorted(LAKE.with_columns(pl.col("symbol").replace("BTC", None)))
    assert not strictly_sorted(LAKE.head(1).with_columns(pl.col("symbol").replace("AAA", None)))
    # Only the named columns count, compared in their order.
    assert strictly_increasing(LAKE, ["symbol", "date", "adj_close"])
    assert not strictly_increasing(LAKE, ["date", "symbol"])
    assert not strictly_increasing(LAKE, ["symbol"])


def test_the_full_build_splices_the_index_bars_into_the_sorted_lake_bars(panel):
    # The full build's fact_prices is the lake's bars with the index bars, sorted by symbol and date.
    prices, assets, sessions = panel
    marts = build_marts(prices, assets, sessions, PARAMS)
    fact = marts.tables["fact_prices"]
    derived = pl.col("symbol").is_in(marts.tables["dim_index_member"]["index_symbol"].unique().implode())
    assert set(fact.filter(derived)["symbol"]) >= {"ALTS", "MAJORS"}
    assert_frame_equal(fact, fact.sort("symbol", "date", maintain_order=True))
    assert_frame_equal(fact.filter(~derived), prices.sort("symbol", "date"))


def test_a_tail_keeps_the_rows_from_its_day_and_needs_the_date_in_the_key():
    from transforms.graph import tail

    frame = pl.DataFrame({"symbol": ["A", "A", "A", "B"], "date": [D - timedelta(1), D, None, D + timedelta(1)]})
    # A null date counts as changed (as the load's delete-and-insert counts it).
    assert tail("fact_prices", frame, D).to_dict(as_series=False) == {
        "symbol": ["A", "A", "B"], "date": [D, None, D + timedelta(1)]}
    already = frame.filter(pl.col("date") >= D)
    assert tail("fact_prices", already, D) is already  # a node that returned its tail: no copy
    # A table whose key lacks its date: its tail could not be audited alone (warehouse.quality.audit_from).
    with pytest.raises(ValueError, match="mart_mix_summary cannot be handed on"):
        tail("mart_mix_summary", pl.DataFrame({"mix": ["m"]}), D)
