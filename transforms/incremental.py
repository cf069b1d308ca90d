"""The incremental halves of the mart graph's nodes (transforms/graph.py).

A node built with ``since`` (the first calendar date whose stored bars may
differ from the ones the previous run read: ``first_changed_session``; for a
plain nightly run the day after the previous as-of) returns what its full
build would, given the tables the previous run published. The helpers here
are those node bodies' heavy parts:

- ``mart_rolling_correlation`` (``_rolling_correlation_since``): from
  ``max(windows)`` (+ ``MARGIN_SESSIONS``) sessions of returns, extended back
  to an epoch boundary of the calendar so the values are the full build's bit
  for bit, each pair's span taken from the previous rows; a pair that is new,
  resumes after a gap, or now ends before the seam (bars after a gap withdrawn)
  is computed over its whole history;
- ``mart_correlation_matrix`` (``_matrix_since``): only the as-of blocks
  on/after the first changed session, plus null rows for a symbol that is new
  to the matrix;
- Alpha Score marts (``factor_marts_since``): ``build_factor_marts``/
  ``evaluate_factors`` with ``from_date`` (trailing look-back in those functions).

Pure: frames in, frames out. Row order may differ from the full build's
(tables are keyed sets; ``fact_prices`` is not re-sorted).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import polars as pl

from contracts.tables import MART_CORRELATION_MATRIX, MART_ROLLING_CORRELATION
from transforms.correlation import rolling_correlation
from transforms.factor_eval import evaluate_factors, factor_ic_summary
from transforms.marts import MartParams, factor_scores
from transforms.matrix import as_of_sessions, mart_correlation_matrix

# Sessions of look-back beyond max(windows): pairs whose previous span ended
# within this margin before the changed range get their missing rows from the
# tail; earlier gaps are recomputed over the pair's whole history.
MARGIN_SESSIONS = 21
BAR_VALUE_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")
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


def factor_marts_since(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    params: MartParams,
    fundamentals: pl.DataFrame | None,
    previous: Mapping[str, pl.DataFrame],
    from_date: date,
) -> tuple[dict[str, pl.DataFrame], dict[str, date]]:
    """The Alpha Score marts: scores and metrics of sessions on/after
    ``from_date`` and the IC of dates whose forward window reaches it, from the
    ``from_date`` API of ``transforms.factors``/``transforms.factor_eval``,
    merged with the previous rows; the IC summary over all IC rows. Second:
    per table, the date before which its rows are the previous rows
    (``transforms.marts.Marts.unchanged_before``); the tables named there are
    returned as their tails, the rows on/after that date (INTERFACE.md).

    Of the previous rows it reads the scores from ``max(horizons)`` sessions
    before ``from_date`` on (the IC's forward windows) and the whole IC (its
    summary); the metrics not at all (``transforms.graph``'s factors node
    declares that window, ``seed_reads`` reads no more)."""
    scores, metrics = factor_scores(prices, assets, sessions, params, fundamentals, from_date=from_date)
    # The previous rows as read (no copy) when none is dated on/after from_date, the nightly case.
    all_scores = pl.concat([_before(previous["mart_factor_scores"], "date", from_date), scores])
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
    # Previous IC rows before every horizon's touched date and before the
    # first recomputed date are kept as they were.
    firsts = [d for d in (touched["_touched"].min(), ic["date"].min()) if d is not None]
    unchanged = {"mart_factor_scores": from_date, "mart_factor_metrics": from_date,
                 "mart_factor_ic": min(firsts, default=from_date)}
    tables = {
        "mart_factor_scores": scores,
        "mart_factor_metrics": metrics,
        "mart_factor_ic": all_ic.filter(pl.col("date") >= unchanged["mart_factor_ic"]),
        "mart_factor_ic_summary": summary,
    }
    return tables, unchanged


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
    # Each previous pair's span (its rows are dense on sessions), from its rows on/after the
    # tail's first session only: an earlier first gives the tail's grid the same start, and a
    # pair without such a row is recomputed whole or kept as it was (``_pairs_before``).
    spans = (
        prev_corr.filter((pl.col("window_days") == windows[0]) & (pl.col("date") >= sess[tail_idx]))
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
    pairs = pl.DataFrame({"asset": assets}, schema={"asset": pl.String}).join(
        pl.DataFrame({"benchmark": benchmarks}, schema={"benchmark": pl.String}), how="cross"
    ).filter(
        pl.col("asset") != pl.col("benchmark")
    )
    # Continuing pairs reach the session before the changed range; the rest of
    # the previous pairs either end before it and stay as they were, or resume
    # after a gap and are recomputed whole, like pairs new to this run.
    spans = spans.join(pairs, on=_PAIR, how="semi")
    continuing = spans.filter(pl.col("prev_last") >= last_prev_session)
    resumed = spans.filter((pl.col("prev_last") < last_prev_session) & (pl.col("last") > pl.col("prev_last")))
    # A pair whose span now ends earlier than its previous rows, before the session before the
    # changed range: its previous rows past a gap (their series' returns after it since
    # withdrawn) are no longer the full build's, which ends the pair at its gap. Only a
    # revision, never a next day (returns before it are the previous run's): rebuilt whole.
    shrunk = spans.filter((pl.col("last") < pl.col("prev_last")) & (pl.col("last") < last_prev_session))
    continuing = continuing.join(shrunk, on=_PAIR, how="anti")
    older = pairs.join(spans.select(_PAIR), on=_PAIR, how="anti")
    whole = pl.concat([resumed.select(_PAIR), shrunk.select(_PAIR), _pairs_before(prev_corr, older, last, windows[0])])

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


def _pairs_before(prev_corr: pl.DataFrame, pairs: pl.DataFrame, last: pl.DataFrame, window: int) -> pl.DataFrame:
    """Of ``pairs``, none with a previous row from the tail's first session on, those to
    recompute over their whole history: a pair new to this run, or one that resumes (both
    series have returns in the tail, so past the pair's previous rows). A pair whose series
    lacks tail returns keeps its previous rows, if it has any: only those pairs are looked
    up among all previous rows."""
    with_returns = last.filter(pl.col("_last").is_not_null())["symbol"].implode()
    both = pl.col("asset").is_in(with_returns) & pl.col("benchmark").is_in(with_returns)
    resumed, unsure = pairs.filter(both), pairs.filter(~both)
    if unsure.height:
        known = (
            prev_corr.filter(pl.col("asset").is_in(unsure["asset"].unique().implode()) & (pl.col("window_days") == window))
            .select(_PAIR)
            .unique()
        )
        unsure = unsure.join(known, on=_PAIR, how="anti")
    return pl.concat([resumed, unsure])


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
) -> tuple[pl.DataFrame, date | None]:
    """mart_correlation_matrix: the previous blocks that are still as-of dates
    (a previous "latest session" that is not a month-end drops out), plus the
    blocks on/after the first changed session; a symbol new to the matrix gets
    null rows (no observation) in the kept blocks, as a full build gives it.
    Second: the date before which the rows are the previous rows (the first
    changed session, or the dropped block's date), None when symbols changed."""
    if from_idx >= sess.len():
        return prev_matrix, sess[-1] + timedelta(days=1) if sess.len() else None
    from_session = sess[from_idx]
    unchanged: date | None = from_session
    targets = as_of_sessions(sess)
    # Every block holds the whole grid of the previous run's symbols: its last one names them
    # (also when only the rows from the previous latest session on were read).
    last = prev_matrix["date"].max()
    prev_symbols = set(prev_matrix.filter(pl.col("date") == last)["asset_a"].unique().to_list()) if last else set()
    kept = _before(prev_matrix, "date", from_session)
    # Of the kept blocks only the last can have stopped being an as-of date
    # (the previous run's latest session, when it is not a month-end).
    if kept.height and not targets.is_in([kept["date"].max()]).any():
        unchanged = kept["date"].max()
        dates = kept["date"]
        if dates.is_sorted():
            kept = kept.slice(0, dates.search_sorted(dates.max(), side="left"))
        else:
            kept = kept.filter(pl.col("date").is_in(targets.implode()))
    prev_names = prev_symbols if kept.height else set()
    if prev_names and prev_names != set(names):
        unchanged = None
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
    return pl.concat([MART_CORRELATION_MATRIX.conform(kept), new]), unchanged
