"""The nightly incremental rebuild: only the rows a changed range of bars touches.

``build_marts_incremental`` returns what ``transforms.marts.build_marts`` would
return for the same inputs, given the tables the previous run published
(``previous``) and ``from_date``, the first calendar date whose stored bars may
differ from the ones the previous run read (``first_changed_session``; for a
plain nightly run the day after the previous as-of). Every table is the
previous run's rows before the changed range plus rows recomputed from a
trailing look-back:

- derived crypto indices: chained from the last published level;
- ``fact_returns``: from the session before the first changed session;
- ``mart_rolling_correlation``: from ``max(windows)`` (+ a margin) sessions of
  returns, extended back to an epoch boundary of the calendar so the values are
  the full build's bit for bit, each pair's span taken from the previous rows;
  a pair that is new or resumes after a gap is computed over its whole history;
- ``mart_correlation_matrix``: only the as-of blocks on/after the first changed
  session, plus null rows for a symbol that is new to the matrix;
- ``mart_correlation_events``, milestones, period returns, allocation marts:
  recomputed whole from the assembled inputs (they are path-dependent, and
  cheap next to the correlations: see docs/performance.md);
- Alpha Score marts: ``build_factor_marts``/``evaluate_factors`` with
  ``from_date`` (trailing look-back in those functions).
- ``mart_spillover``, ``mart_lead_lag``, ``mart_spillover_index``: rows dated
  on/after the first changed session, from the whole returns (each row reads
  only its own window), plus the previous rows still on a publish date.

Pure: frames in, frames out. Row order may differ from the full build's
(tables are keyed sets; ``fact_prices`` is not re-sorted).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import polars as pl

from contracts.tables import MART_CORRELATION_MATRIX, MART_ROLLING_CORRELATION
from contracts.vocabulary import CRYPTO_CLASSES, INDEX_CLASSES
from transforms.correlation import rolling_correlation
from transforms.events import correlation_events_since, mart_correlation_events
from transforms.factor_eval import evaluate_factors, factor_ic_summary
from transforms.indices import build_crypto_indices
from transforms.marts import (
    MartParams,
    Marts,
    FACTOR_TABLES,
    allocation_marts,
    build_marts,
    factor_marts,
    factor_scores,
    milestone_partition,
    present_benchmarks,
)
from transforms.matrix import as_of_sessions, mart_correlation_matrix
from transforms.returns import log_returns
from transforms.spillover_marts import spillover_marts_since

# Sessions of look-back beyond max(windows): pairs whose previous span ended
# within this margin before the changed range get their missing rows from the
# tail; earlier gaps are recomputed over the pair's whole history.
MARGIN_SESSIONS = 21
BAR_VALUE_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")
# Tables without which an incremental run cannot start.
REQUIRED = ("fact_prices", "fact_returns", "mart_rolling_correlation", "mart_correlation_matrix")
_PAIR = ["asset", "benchmark"]


def first_changed_session(old_prices: pl.DataFrame, new_prices: pl.DataFrame) -> date | None:
    """The earliest date of a bar that was added, removed or changed (any of
    open/high/low/close/adj_close/volume, exact, nulls equal to nulls) between
    two sets of stored bars; None when they hold the same bars.

    A calendar date, not necessarily an exchange session (a crypto Saturday):
    pass it as ``from_date`` as is. ``source``/``ingested_at`` are ignored.
    """
    cols = [c for c in BAR_VALUE_COLUMNS if c in old_prices.columns and c in new_prices.columns]
    keys = ["symbol", "date"]
    old = old_prices.select(*keys, *cols, pl.lit(True).alias("_old"))
    new = new_prices.select(*keys, *cols, pl.lit(True).alias("_new"))
    joined = old.join(new, on=keys, how="full", coalesce=True, suffix="_n")
    differs = pl.any_horizontal(
        pl.col("_old").is_null(),
        pl.col("_new").is_null(),
        *[~pl.col(c).eq_missing(pl.col(f"{c}_n")) for c in cols],
    )
    return joined.filter(differs).select(pl.col("date").min()).item()


def build_marts_incremental(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    params: MartParams,
    fundamentals: pl.DataFrame | None = None,
    *,
    previous: Mapping[str, pl.DataFrame],
    from_date: date,
    history: pl.DataFrame | None = None,
) -> Marts:
    """``build_marts(prices, assets, sessions, params, fundamentals)``, reusing
    ``previous`` (the tables of a run whose inputs equal these before
    ``from_date``, with the same ``params`` and assets) for every row dated
    before ``from_date``.

    Falls back to the full build when ``previous`` lacks a table it needs or
    the changed range starts within ``max(windows)`` sessions of the first.
    ``history`` is ``build_marts``'.
    """
    sess = sessions.cast(pl.Date).unique().sort()
    windows = sorted(set(params.windows))
    from_idx = sess.search_sorted(from_date, side="left")
    look_idx = from_idx - max(windows) - MARGIN_SESSIONS
    if look_idx < 1 or any(t not in previous for t in REQUIRED):
        return build_marts(prices, assets, sess, params, fundamentals, history=history)
    # The rolling correlations' sums restart at every epoch of the calendar
    # (transforms.correlation.EPOCH_SESSIONS): a tail that starts on an epoch
    # boundary at or before the look-back reproduces the full build's values
    # bit for bit. The matrix needs only the look-back.
    epoch = params.correlation_epoch_sessions
    tail_idx = epoch * (look_idx // epoch)

    # Which benchmarks have prices, without hashing every symbol of the lake.
    has = prices.select([(pl.col("symbol") == b).any().alias(str(i)) for i, b in enumerate(params.benchmarks)])
    present = {b for i, b in enumerate(params.benchmarks) if has[str(i)].item()} if params.benchmarks else set()
    benchmarks, warnings = present_benchmarks(params, present)

    # Derived indices and fact_prices.
    prev_prices = previous["fact_prices"]
    indices = build_crypto_indices(
        prices, assets, stablecoins=params.stablecoins,
        previous_bars=prev_prices.filter(pl.col("source") == "derived") if "source" in prev_prices.columns else prev_prices,
        since=from_date,
    )  # fmt: skip
    if "ingested_at" in prices.columns and not indices.bars.is_empty():
        index_bars = indices.bars.with_columns(
            pl.lit("derived").alias("source"), pl.lit(prices["ingested_at"].max()).alias("ingested_at")
        )
    else:
        index_bars = indices.bars
    # Not re-sorted (the lake's bars come sorted; the three index series are appended).
    all_prices = pl.concat([prices, index_bars], how="diagonal_relaxed", rechunk=False)
    all_assets = pl.concat([assets, indices.assets], how="diagonal_relaxed").sort("symbol")
    crypto = all_assets.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))["symbol"].to_list()
    index_like = all_assets.filter(pl.col("asset_class").is_in(INDEX_CLASSES))["symbol"].to_list()

    # Returns: fact_returns gets the changed sessions (from the session before
    # them); correlations and the matrix read the look-back of their symbols only.
    from_session = sess[from_idx] if from_idx < sess.len() else None
    # From the session before the tail (its first return needs that close), or
    # from the first session, whose return is null in the full build too.
    tail_sessions = sess.slice(max(tail_idx - 1, 0))
    matrix_symbols = sorted(set(benchmarks) | set(index_like) | set(crypto))
    # One pass over the lake's bars for every symbol the marts below read whole
    # (crypto, indices, benchmarks: a few percent of the rows).
    focus = all_prices.filter(pl.col("symbol").is_in(sorted(set(matrix_symbols) | {params.period_benchmark})))
    tail_returns = log_returns(focus.filter(pl.col("date") >= tail_sessions[0]), tail_sessions).filter(
        pl.col("session_date") >= sess[tail_idx]
    )
    prev_returns = previous["fact_returns"]
    if from_session is None:
        returns = prev_returns
    else:
        changed = log_returns(
            all_prices.filter(pl.col("date") >= sess[from_idx - 1]), sess.slice(from_idx - 1)
        ).filter(pl.col("session_date") >= from_session)
        returns = pl.concat([_before(prev_returns, "session_date", from_session), changed], rechunk=False)

    kept_corr, new_corr, whole = _rolling_correlation_since(
        previous["mart_rolling_correlation"], prev_returns, tail_returns, sess, tail_idx, from_idx,
        crypto, benchmarks, windows, epoch,
    )  # fmt: skip
    corr = pl.concat([kept_corr, new_corr])
    if from_session is None and "mart_correlation_events" in previous:
        events = previous["mart_correlation_events"]  # no new session: no new correlation row
    elif params.event_confirm_sessions == 1 and from_session is not None and "mart_correlation_events" in previous:
        prev_events = previous["mart_correlation_events"]
        if whole.height:
            prev_events = prev_events.join(whole, on=_PAIR, how="anti")
        events = correlation_events_since(
            kept_corr, prev_events, new_corr, sess, from_session, levels=params.event_levels,
            dead_band=params.event_dead_band,
        )
    else:
        # k > 1: an event depends on the run lengths before the new rows; replay everything.
        events = mart_correlation_events(
            corr, levels=params.event_levels, confirm_sessions=params.event_confirm_sessions,
            dead_band=params.event_dead_band,
        )
    matrix_returns = tail_returns.filter(pl.col("session_date") >= sess[look_idx])
    matrix = _matrix_since(previous["mart_correlation_matrix"], matrix_returns, sess, from_idx, matrix_symbols, windows)
    milestone_symbols = sorted(set(benchmarks) | set(index_like))
    milestone_prices = focus.filter(
        pl.col("symbol").is_in(milestone_symbols + [params.period_benchmark])
    ).sort("symbol", "date")
    milestones, period_returns = milestone_partition(
        milestone_prices, milestone_symbols, params.period_benchmark, sess, crypto, history
    )

    tables = {
        "fact_prices": all_prices,
        "dim_asset": all_assets,
        "dim_index_member": indices.members,
        "fact_returns": returns,
        "mart_rolling_correlation": corr,
        "mart_correlation_events": events,
        "mart_correlation_matrix": matrix,
        "mart_market_milestones": milestones,
        "mart_period_returns": period_returns,
    }
    stocks = assets.filter(pl.col("asset_class") == "equity")["symbol"]
    if stocks.len() and params.factors:
        if all(t in previous for t in FACTOR_TABLES):
            tables |= factor_marts_since(prices, assets, sess, params, fundamentals, previous, from_date)
        else:
            tables |= factor_marts(prices, assets, sess, params, fundamentals)
    if params.spillover.enabled:
        # From the whole returns: each row of these marts reads only its own window.
        tables |= spillover_marts_since(previous, returns, focus, sess, crypto, benchmarks, params.spillover, from_session)
    if fundamentals is not None:
        tables["fact_fundamentals"] = fundamentals
    if params.policy is not None:
        crypto_prices = focus.filter(pl.col("symbol").is_in(crypto)).sort("symbol", "date")
        rut = None
        if params.policy.regime:
            regime = params.policy.regime.benchmark
            rut = (focus if regime in matrix_symbols else all_prices).filter(pl.col("symbol") == regime)
        allocation, mix_warnings = allocation_marts(params.policy, crypto_prices, corr, rut)
        tables |= allocation
        warnings += mix_warnings
    return Marts(tables=tables, warnings=warnings)


def factor_marts_since(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    params: MartParams,
    fundamentals: pl.DataFrame | None,
    previous: Mapping[str, pl.DataFrame],
    from_date: date,
) -> dict[str, pl.DataFrame]:
    """The Alpha Score marts: scores and metrics of sessions on/after
    ``from_date`` and the IC of dates whose forward window reaches it, from the
    ``from_date`` API of ``transforms.factors``/``transforms.factor_eval``,
    merged with the previous rows; the IC summary over all IC rows."""
    scores, metrics = factor_scores(prices, assets, sessions, params, fundamentals, from_date=from_date)
    all_scores = pl.concat([previous["mart_factor_scores"].filter(pl.col("date") < from_date), scores])
    all_metrics = pl.concat([previous["mart_factor_metrics"].filter(pl.col("date") < from_date), metrics])
    ic, _ = evaluate_factors(all_scores, prices, sessions, horizons=params.factor_horizons, from_date=from_date)
    # The IC of date t uses closes t..t+h sessions: touched from h sessions before the first changed one.
    sess = sessions.cast(pl.Date).unique().sort()
    from_idx = sess.search_sorted(from_date, side="left")
    touched = pl.DataFrame(
        {
            "horizon_sessions": [int(h) for h in params.factor_horizons],
            "_touched": [sess[max(from_idx - int(h), 0)] if sess.len() else None for h in params.factor_horizons],
        },
        schema={"horizon_sessions": pl.Int64, "_touched": pl.Date},
    )
    previous_ic = previous["mart_factor_ic"]
    kept = (
        previous_ic.join(touched, on="horizon_sessions", how="left")
        .filter(pl.col("_touched").is_null() | (pl.col("date") < pl.col("_touched")))
        .drop("_touched")
        .join(ic.select("date", "factor", "horizon_sessions"), on=["date", "factor", "horizon_sessions"], how="anti")
    )
    all_ic = pl.concat([kept, ic.select(kept.columns)]).sort("factor", "horizon_sessions", "date")
    if "top_minus_bottom" in all_ic.columns:
        summary = factor_ic_summary(all_ic)
    else:
        # Previous IC rows from before mart_factor_ic published the daily
        # spread: only a whole evaluation gives the summary. Exact but slow,
        # and only once: this run publishes the spread.
        _, summary = evaluate_factors(all_scores, prices, sessions, horizons=params.factor_horizons)
    return {
        "mart_factor_scores": all_scores,
        "mart_factor_metrics": all_metrics,
        "mart_factor_ic": all_ic,
        "mart_factor_ic_summary": summary,
    }


def _rolling_correlation_since(
    prev_corr: pl.DataFrame,
    prev_returns: pl.DataFrame,
    tail_returns: pl.DataFrame,
    sess: pl.Series,
    tail_idx: int,
    from_idx: int,
    assets: list[str],
    benchmarks: list[str],
    windows: list[int],
    epoch: int,
) -> pl.DataFrame:
    """mart_rolling_correlation as (previous rows kept, rows recomputed, pairs
    recomputed over their whole history): the previous rows before the first
    changed session, the rows on/after it from ``tail_returns`` (sessions from
    ``tail_idx``), and whole series for pairs that are new or resume after a gap."""
    if from_idx >= sess.len():
        return prev_corr, prev_corr.clear(), pl.DataFrame(schema={"asset": pl.String, "benchmark": pl.String})
    from_session, last_prev_session = sess[from_idx], sess[from_idx - 1]
    # Each previous pair's span (its rows are dense on sessions).
    spans = (
        prev_corr.filter(pl.col("window_days") == windows[0])
        .group_by(_PAIR)
        .agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("prev_last"))
    )
    last = (
        tail_returns.filter(pl.col("log_return").is_not_null())
        .group_by("symbol")
        .agg(pl.col("session_date").max().alias("_last"))
    )
    spans = (
        spans.join(last.rename({"symbol": "asset", "_last": "_x1"}), on="asset", how="left")
        .join(last.rename({"symbol": "benchmark", "_last": "_y1"}), on="benchmark", how="left")
        .with_columns(
            pl.when(pl.col("_x1").is_not_null() & pl.col("_y1").is_not_null())
            .then(pl.min_horizontal("_x1", "_y1"))
            .otherwise(pl.col("prev_last"))
            .alias("last")
        )
    )
    pairs = pl.DataFrame({"asset": assets}).join(pl.DataFrame({"benchmark": benchmarks}), how="cross").filter(
        pl.col("asset") != pl.col("benchmark")
    )
    # Continuing pairs reach the session before the changed range; the rest of
    # the previous pairs either end before it and stay as they were, or resume
    # after a gap and are recomputed whole, like pairs new to this run.
    spans = spans.join(pairs, on=_PAIR, how="semi")
    continuing = spans.filter(pl.col("prev_last") >= last_prev_session)
    resumed = spans.filter((pl.col("prev_last") < last_prev_session) & (pl.col("last") > pl.col("prev_last")))
    new_pairs = pairs.join(spans.select(_PAIR), on=_PAIR, how="anti")
    whole = pl.concat([resumed.select(_PAIR), new_pairs.select(_PAIR)])

    # ``tail_idx`` is on an epoch boundary, so the tail's epochs are the full build's.
    tail = rolling_correlation(
        tail_returns, sess.slice(tail_idx), assets, benchmarks, windows,
        spans=continuing.select(*_PAIR, "first", "last"), since=from_session, epoch=epoch,
    )  # fmt: skip
    tail = tail.join(continuing.select(_PAIR), on=_PAIR, how="semi")
    parts = [_before(prev_corr, "date", from_session)]
    if whole.height:
        parts[0] = parts[0].join(whole, on=_PAIR, how="anti")
        symbols = set(whole["asset"]) | set(whole["benchmark"])
        history = pl.concat(
            [
                prev_returns.filter(pl.col("symbol").is_in(list(symbols)) & (pl.col("session_date") < sess[tail_idx])),
                tail_returns.filter(pl.col("symbol").is_in(list(symbols))),
            ]
        )
        recomputed = rolling_correlation(
            history, sess, sorted(set(whole["asset"])), sorted(set(whole["benchmark"])), windows, epoch=epoch
        ).join(whole, on=_PAIR, how="semi")
        parts.append(recomputed)
    parts.append(tail)
    out = [MART_ROLLING_CORRELATION.conform(p) for p in parts]
    return out[0], pl.concat(out[1:]), whole


def _before(frame: pl.DataFrame, column: str, d: date) -> pl.DataFrame:
    """Rows with ``column`` before ``d``; the frame itself (no copy) when that is all of them."""
    last = frame[column].max()
    return frame if last is None or last < d else frame.filter(pl.col(column) < d)


def _matrix_since(
    prev_matrix: pl.DataFrame,
    tail_returns: pl.DataFrame,
    sess: pl.Series,
    from_idx: int,
    names: list[str],
    windows: list[int],
) -> pl.DataFrame:
    """mart_correlation_matrix: the previous blocks that are still as-of dates
    (a previous "latest session" that is not a month-end drops out), plus the
    blocks on/after the first changed session; a symbol new to the matrix gets
    null rows (no observation) in the kept blocks, as a full build gives it."""
    if from_idx >= sess.len():
        return prev_matrix
    from_session = sess[from_idx]
    targets = as_of_sessions(sess)
    kept = _before(prev_matrix, "date", from_session)
    # Of the kept blocks only the last can have stopped being an as-of date
    # (the previous run's latest session, when it is not a month-end).
    if kept.height and not targets.is_in([kept["date"].max()]).any():
        dates = kept["date"]
        if dates.is_sorted():
            kept = kept.slice(0, dates.search_sorted(dates.max(), side="left"))
        else:
            kept = kept.filter(pl.col("date").is_in(targets.implode()))
    prev_names = set(kept.filter(pl.col("date") == kept["date"].max())["asset_a"].unique().to_list()) if kept.height else set()
    if prev_names and prev_names != set(names):
        kept = kept.filter(pl.col("asset_a").is_in(names) & pl.col("asset_b").is_in(names))
        added = sorted(set(names) - prev_names)
        if added:
            name_s = pl.DataFrame({"asset_a": names})
            grid = name_s.join(name_s.rename({"asset_a": "asset_b"}), how="cross").filter(
                pl.col("asset_a").is_in(added) | pl.col("asset_b").is_in(added)
            )
            fill = (
                kept.select("date", "window_days")
                .unique()
                .join(grid, how="cross")
                .with_columns(pl.lit(None, dtype=pl.Float64).alias("correlation"), pl.lit(0).alias("observations"))
                .pipe(MART_CORRELATION_MATRIX.conform)
            )
            kept = pl.concat([kept, fill]).sort("date", "window_days", "asset_a", "asset_b")
    new = mart_correlation_matrix(tail_returns, sess, names, windows, since=from_session)
    return pl.concat([MART_CORRELATION_MATRIX.conform(kept), new])
