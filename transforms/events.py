"""Correlation events: sign changes and level crossings of rolling correlations.

Both kinds of event are changes of a two-valued *state* of one series (asset,
benchmark, window): the sign of the correlation, or whether it is at/above a
level. A state must hold ``confirm_sessions`` consecutive sessions to count
(so a one-day flicker around zero is not news when k > 1), and the event is
dated on the session that confirms it: that is the first day a daily run can
know about it, so an event is never back-dated and appears in exactly one run.

A null correlation (window not full, zero variance) breaks a series: the state
is forgotten and the next confirmed state is a start, not a change.

The sign has a dead band (``dead_band``, default ``DEFAULT_DEAD_BAND``): a
correlation is positive only above +band and negative only below -band; inside
[-band, +band] the series keeps the sign it had (hysteresis), so a correlation
wobbling around zero is not a stream of sign changes. A series that starts
inside the band has no sign until it leaves it.

Sentences print the correlation with two decimals, or with as many more (up to
six) as it takes for the printed number to be on the side the sentence claims:
never "fell below 0.50 (0.50)" or "turned negative (-0.00)".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from contracts.tables import MART_CORRELATION_EVENTS

_KEYS = ["asset", "benchmark", "window_days"]
# Published default of the sign's dead band (flows.settings.Settings.event_dead_band).
DEFAULT_DEAD_BAND = 0.05


def _state_changes(series: pl.DataFrame, state: pl.Expr, k: int) -> pl.DataFrame:
    """Rows where a confirmed state (+1/-1) replaces the opposite confirmed state.

    ``series`` is sorted by _KEYS and date and numbered by ``_row``; ``state``
    is +1, -1 or null (a break). Adds ``_state``, ``_previous_date`` (last
    session before the current run that already had the new state) and
    ``_previous_row``.
    """
    s = pl.col("_state")
    # Everything is computed on the whole sorted frame at once; a row belongs
    # to a series / segment / run by an integer id, and values never leak
    # across ids. (Per-group window expressions over many small runs were the
    # slowest part of building the marts.)
    i = pl.int_range(pl.len())
    # ``_first`` (optional) marks each series' first row when the frame holds
    # only part of a series (incremental runs); otherwise that is row 0.
    series_start = pl.col("_first") if "_first" in series.columns else pl.col("_row") == 0
    new_run = series_start | (s != s.shift(1)).fill_null(True)
    df = series.with_columns(state.cast(pl.Int8).alias("_state")).with_columns(
        series_start.cum_sum().alias("_series"),
        (series_start | s.is_null()).cum_sum().alias("_segment"),
        pl.when(new_run).then(i).forward_fill().alias("_run_start"),
    )
    position = i - pl.col("_run_start") + 1
    confirmed = pl.when(s.is_not_null() & (position == k)).then(s)

    def last_in_group_before(when: pl.Expr, value: pl.Expr, group: str) -> pl.Expr:
        # The value on the last earlier row of the same group where ``when`` held.
        val = pl.when(when).then(value).forward_fill().shift(1)
        grp = pl.when(when).then(pl.col(group)).forward_fill().shift(1)
        return pl.when(grp == pl.col(group)).then(val)

    # State in force before this row, within the unbroken segment.
    prior = last_in_group_before(confirmed.is_not_null(), confirmed, "_segment")

    def last_before(value: int, col: str) -> pl.Expr:
        # Last row with state == value before this one, across breaks: "first
        # time since" looks at the whole record, not the unbroken segment.
        return last_in_group_before(s == value, pl.col(col), "_series")

    def at_run_start(col: str) -> pl.Expr:
        return pl.col(col).gather(pl.col("_run_start"))

    return (
        df.with_columns(
            confirmed.alias("_confirmed"),
            prior.alias("_prior"),
            pl.when(s == 1).then(last_before(1, "date")).otherwise(last_before(-1, "date")).alias("_previous_date"),
            pl.when(s == 1).then(last_before(1, "_row")).otherwise(last_before(-1, "_row")).alias("_previous_row"),
        )
        .with_columns(at_run_start("_previous_date"), at_run_start("_previous_row"))
        .filter(pl.col("_confirmed").is_not_null() & (pl.col("_prior") == -pl.col("_confirmed")))
        .drop("_series", "_segment", "_run_start", "_confirmed", "_prior")
    )


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _fmt_on_side(x: float, event: str, level: float | None) -> str:
    """``x`` with 2 decimals, or the fewest more (up to 6) that keep the printed
    number on the side ``event`` claims (above/below ``level``, or the sign)."""
    claims = {
        "turned_negative": lambda v: v < 0,
        "turned_positive": lambda v: v > 0,
        "crossed_above": lambda v: level is None or v >= level,
        "crossed_below": lambda v: level is None or v < level,
    }[event]
    for decimals in range(2, 7):
        text = f"{x:.{decimals}f}"
        if claims(float(text)):
            return text
    return f"{x:.6g}"


def _describe(
    window: int,
    asset: str,
    benchmark: str,
    event: str,
    correlation: float,
    previous: date | None,
    level: float | None,
    k: int,
) -> str:
    what = {
        "turned_negative": "turned negative",
        "turned_positive": "turned positive",
        "crossed_above": f"rose above {_fmt(level)}" if level is not None else "",
        "crossed_below": f"fell below {_fmt(level)}" if level is not None else "",
    }[event]
    held = f", holding for {k} sessions," if k > 1 else ""
    since = f"since {previous.isoformat()}" if previous is not None else "on record"
    return (
        f"The {window}-session correlation between {benchmark} and {asset} {what} "
        f"({_fmt_on_side(correlation, event, level)}){held} for the first time {since}."
    )


def mart_correlation_events(
    rolling: pl.DataFrame,
    *,
    levels: Sequence[float] = (0.5, -0.5),
    confirm_sessions: int = 1,
    dead_band: float = DEFAULT_DEAD_BAND,
) -> pl.DataFrame:
    """mart_correlation_events from a rolling correlation frame.

    ``rolling`` has one row per session of each (asset, benchmark,
    window_days) series: date, asset, benchmark, window_days, correlation.

    Events, each on the session that confirms it (``confirm_sessions`` = k):

    - ``turned_negative`` / ``turned_positive``: the sign held k sessions and the
      sign confirmed before it (with no null in between) was opposite. The
      sign is +1 above ``dead_band``, -1 below ``-dead_band`` and, inside the
      band, the sign the series last had (none at its start or after a null):
      a change needs the correlation to go past the band on the new side.
    - ``crossed_above`` L: the correlation is >= L for k sessions after having
      been < L (confirmed); ``crossed_below`` L: < L for k sessions after >= L.
      A value equal to L counts as at/above, so the two are exact opposites.

    ``previous_date`` is the last session before the new state began on which
    the series already had it (null: first time on record);
    ``sessions_since`` is the number of sessions from ``previous_date`` to
    ``date`` (row distance in the series, so 1 = consecutive sessions).
    """
    if confirm_sessions < 1:
        raise ValueError("confirm_sessions must be at least 1")
    _check_band(dead_band)
    series = rolling.select("date", *_KEYS, "correlation").sort(*_KEYS, "date")
    series = series.with_columns(pl.int_range(pl.len()).over(_KEYS).alias("_row"))
    series = series.with_columns(_held_sign(dead_band, pl.col("_row") == 0).alias("_sign"))
    found = [
        _state_changes(series, state, confirm_sessions).with_columns(
            pl.when(pl.col("_state") == 1).then(pl.lit(up)).otherwise(pl.lit(down)).alias("event"),
            pl.lit(level, dtype=pl.Float64).alias("level"),
        )
        for state, up, down, level in _families(levels)
    ]
    return _finish(pl.concat(found), confirm_sessions)


def _check_band(dead_band: float) -> None:
    if not 0.0 <= dead_band < 1.0:
        raise ValueError(f"the sign's dead band must be in [0, 1): {dead_band}")


def _held_sign(dead_band: float, series_start: pl.Expr, column: str = "correlation") -> pl.Expr:
    """The sign with hysteresis on a frame sorted by series then date: +1 above
    the band, -1 below it, inside it the last sign of the same unbroken run
    (a run ends at a null correlation or a new series)."""
    c = pl.col(column)
    raw = pl.when(c > dead_band).then(1).when(c < -dead_band).then(-1)
    run = (series_start | c.is_null()).cum_sum()
    return pl.when(c.is_not_null()).then(raw.forward_fill().over(run)).cast(pl.Int8)


def _families(levels: Sequence[float]) -> list[tuple[pl.Expr, str, str, float | None]]:
    """(state: +1 / -1 / null, event when it becomes +1, event when it becomes -1, level).

    The sign's state is the ``_sign`` column (``_held_sign``) the caller adds."""
    c = pl.col("correlation")
    families: list[tuple[pl.Expr, str, str, float | None]] = [
        (pl.col("_sign"), "turned_positive", "turned_negative", None)
    ]
    families += [
        (pl.when(c >= level).then(1).when(c < level).then(-1), "crossed_above", "crossed_below", float(level))
        for level in levels
    ]
    return families


def _finish(found: pl.DataFrame, confirm_sessions: int) -> pl.DataFrame:
    """The published events from ``_state_changes`` rows tagged with event and level."""
    events = found.with_columns((pl.col("_row") - pl.col("_previous_row")).alias("sessions_since"))
    descriptions = [
        _describe(r["window_days"], r["asset"], r["benchmark"], r["event"], r["correlation"],
                  r["_previous_date"], r["level"], confirm_sessions)
        for r in events.iter_rows(named=True)
    ]  # fmt: skip
    return (
        events.with_columns(
            pl.col("_previous_date").alias("previous_date"),
            pl.Series("description", descriptions, dtype=pl.String),
        )
        .pipe(MART_CORRELATION_EVENTS.conform)
        .sort(*_KEYS, "date", "event", "level", nulls_last=False)
    )


# Sessions of previous rows (before the first new session) in which
# ``correlation_events_since`` looks first for a series' held sign and for the
# last date of each state; a series whose answer lies further back (an event
# "for the first time since" years ago, or on record) is looked up in all of
# its previous rows. The window's rows are a fraction of the table: one cheap
# date filter instead of joins and group-bys over every previous row.
RECENT_SESSIONS = 260


def correlation_events_since(
    previous_rolling: pl.DataFrame,
    previous_events: pl.DataFrame,
    new_rolling: pl.DataFrame,
    sessions: pl.Series,
    from_session: date,
    *,
    levels: Sequence[float] = (0.5, -0.5),
    dead_band: float = DEFAULT_DEAD_BAND,
    recent_sessions: int | None = None,
) -> pl.DataFrame:
    """``mart_correlation_events`` (``confirm_sessions`` = 1) of
    ``previous_rolling`` (rows before ``from_session``) followed by
    ``new_rolling`` (rows on/after it), given ``previous_events``, the events
    of ``previous_rolling``. A series in ``new_rolling`` either continues one
    of ``previous_rolling`` up to the session before ``from_session`` or is
    given whole (and then must not be in the previous frames).

    With k = 1 an event on a new row depends only on the row before it and on
    the last earlier row of each state (for ``previous_date``), so each
    continuing series is replayed as: one row per state at its last date
    before ``from_session``, a break, its last previous row, then the new rows.
    Only series whose state changes in the new rows are replayed. The sign
    held inside the dead band is carried into the replay as the last previous
    row's sign (the sign of its run's last correlation outside the band).

    Both the held sign and the last dates are looked up in the previous rows of
    the last ``recent_sessions`` sessions first (None: ``RECENT_SESSIONS``), and in
    all previous rows of the series only where the answer is not found there.
    """
    recent_sessions = RECENT_SESSIONS if recent_sessions is None else recent_sessions
    _check_band(dead_band)
    sess = sessions.cast(pl.Date).unique().sort()
    # Row numbers only enter as differences (sessions_since), and series are
    # dense on sessions: the session index serves as the row number.
    idx = pl.DataFrame({"date": sess, "_row": pl.int_range(sess.len(), eager=True, dtype=pl.Int64)})
    prev = previous_rolling.select("date", *_KEYS, "correlation")
    if prev.height and prev["date"].max() >= from_session:  # no copy when all rows are before it
        prev = prev.filter(pl.col("date") < from_session)
    from_idx = sess.search_sorted(from_session, side="left")
    # At least the last previous session: the continuing series' last rows are read from it.
    recent_from = sess[max(from_idx - max(recent_sessions, 1), 0)] if from_idx else from_session
    recent = prev.filter(pl.col("date") >= recent_from)
    new = new_rolling.select("date", *_KEYS, "correlation")
    families = _families(levels)
    last_date = sess.filter(sess < from_session).max()
    last_prev = recent.filter(pl.col("date") == last_date).join(new.select(_KEYS).unique(), on=_KEYS, how="semi")
    # The sign each continuing series holds on its last previous row: that of
    # the last correlation outside the band, unless a null (a break) came later.
    c = pl.col("correlation")
    held = _last_outside_band(recent, dead_band)
    older = last_prev.select(_KEYS).join(held, on=_KEYS, how="anti")
    if older.height:  # all of the window's rows inside the band: look further back
        held = pl.concat([held, _last_outside_band(_series_rows(prev, older), dead_band)])
    last_prev = last_prev.join(held, on=_KEYS, how="left").with_columns(
        pl.when(c.is_null()).then(None)
        .when(pl.col("_held") > dead_band).then(1.0)
        .when(pl.col("_held") < -dead_band).then(-1.0)
        .otherwise(0.0)  # inside the band with no sign yet
        .alias("_sc")
    )  # fmt: skip
    new = new.with_columns(c.alias("_sc"))
    # Only a series whose state changes somewhere in its new rows (the last
    # previous row included) can have an event, and only those need the last
    # previous date of each state: one pass over their previous rows.
    head = pl.concat(
        [last_prev.select(*_KEYS, "date", "correlation", "_sc"), new.select(*_KEYS, "date", "correlation", "_sc")]
    )
    first_of_series = pl.int_range(pl.len()).over(_KEYS) == 0
    is_new = pl.col("date") >= from_session
    nf = len(families)
    changes = (
        head.sort(*_KEYS, "date")
        .with_columns(_held_sign(dead_band, first_of_series, "_sc").alias("_sign"))
        .with_columns([state.alias(f"_s{f}") for f, (state, *_) in enumerate(families)])
        .group_by(_KEYS)
        .agg(
            *[pl.col(f"_s{f}").n_unique().alias(f"_n{f}") for f in range(nf)],
            # A last date of state v is read only by an event to v on a new row.
            *[(is_new & (pl.col(f"_s{f}") == v)).any().alias(f"_need_{f}_{v}") for f in range(nf) for v in (1, -1)],
        )
        .filter(pl.any_horizontal([pl.col(f"_n{f}") > 1 for f in range(nf)]))
        .drop([f"_n{f}" for f in range(nf)])
    )
    anchor_cols = [f"_{f}_{v}" for f in range(nf) for v in (1, -1)]
    # Only a continuing series has previous rows (one given whole has none).
    replayed = changes.join(last_prev.select(_KEYS), on=_KEYS, how="semi")
    anchors = _last_state_dates(_series_rows(recent, replayed), families, dead_band)
    # A needed date the window lacks may lie before it (a state not seen in the
    # window, or held inside the band since before it): all previous rows of those series.
    missing = (
        replayed.join(anchors, on=_KEYS, how="left")
        .filter(pl.any_horizontal([pl.col(f"_need_{a[1:]}") & pl.col(a).is_null() for a in anchor_cols]))
        .select(_KEYS)
    )
    if missing.height:
        anchors = pl.concat(
            [anchors.join(missing, on=_KEYS, how="anti"),
             _last_state_dates(_series_rows(prev, missing), families, dead_band)]
        )  # fmt: skip
    changes = changes.select(_KEYS)
    last_prev = last_prev.join(changes, on=_KEYS, how="semi")
    new = new.join(changes, on=_KEYS, how="semi")
    found = []
    for f, (state, up, down, level) in enumerate(families):
        replay = pl.concat(
            [
                anchors.select(*_KEYS, pl.col(f"_{f}_1").alias("date"), pl.lit(1.0).alias("correlation"), pl.lit(0).alias("_o")),
                anchors.select(*_KEYS, pl.col(f"_{f}_-1").alias("date"), pl.lit(-2.0).alias("correlation"), pl.lit(1).alias("_o")),
                last_prev.select(*_KEYS, "date", pl.lit(None, dtype=pl.Float64).alias("correlation"), pl.lit(2).alias("_o")),
                # The sign family reads the sign held on that row, the levels its value.
                last_prev.select(*_KEYS, "date", pl.col("_sc" if f == 0 else "correlation").alias("correlation"),
                                 pl.lit(3).alias("_o")),
                new.select(*_KEYS, "date", "correlation", pl.lit(4).alias("_o")),
            ],
            how="vertical_relaxed",
        ).drop_nulls("date")  # fmt: skip
        replay = (
            replay.join(idx, on="date", how="left")
            .sort(*_KEYS, "_o", "date")
            .with_columns((pl.int_range(pl.len()) == 0).over(_KEYS).alias("_first"))
        )
        replay = replay.with_columns(_held_sign(dead_band, pl.col("_first")).alias("_sign"))
        found.append(
            _state_changes(replay, state, 1)
            .filter(pl.col("_o") == 4)
            .with_columns(
                pl.when(pl.col("_state") == 1).then(pl.lit(up)).otherwise(pl.lit(down)).alias("event"),
                pl.lit(level, dtype=pl.Float64).alias("level"),
            )
            .select("date", *_KEYS, "correlation", "_row", "_previous_date", "_previous_row", "event", "level")
        )
    new_events = _finish(pl.concat(found), 1)
    kept = previous_events.filter(pl.col("date") < from_session).select(MART_CORRELATION_EVENTS.column_names)  # small
    return pl.concat([kept.pipe(MART_CORRELATION_EVENTS.conform), new_events]).sort(
        *_KEYS, "date", "event", "level", nulls_last=False
    )


def _series_rows(frame: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """``frame``'s rows of the series in ``keys`` (a few): filters on the window (integers,
    cheap) and then the asset first, so the join on every key column reads only those rows."""
    if keys.is_empty():
        return frame.clear()
    rows = frame.filter(pl.col("window_days").is_in(keys["window_days"].unique().implode()))
    return rows.filter(pl.col("asset").is_in(keys["asset"].unique().implode())).join(keys, on=_KEYS, how="semi")


def _last_outside_band(rows: pl.DataFrame, dead_band: float) -> pl.DataFrame:
    """(_KEYS, ``_held``): per series of ``rows``, its last correlation there that is null
    or outside the band; a series without one in ``rows`` is left out."""
    c = pl.col("correlation")
    return (
        rows.filter(c.is_null() | (c.abs() > dead_band))
        .group_by(_KEYS)
        .agg(c.sort_by("date").last().alias("_held"))
    )


def _last_state_dates(rows: pl.DataFrame, families, dead_band: float) -> pl.DataFrame:
    """(_KEYS, ``_{f}_{v}``): per series of ``rows``, the last date on which family ``f``'s state
    was ``v`` (null: none in ``rows``). The held sign is taken from the rows given alone: where
    they start inside the band it is null until the first value outside it, so a date found
    is the one all of the series' rows give, and a date not found may lie before ``rows``."""
    first_of_series = pl.int_range(pl.len()).over(_KEYS) == 0
    return (
        rows.sort(*_KEYS, "date")
        .with_columns(_held_sign(dead_band, first_of_series).alias("_sign"))
        .group_by(_KEYS)
        .agg(
            *[pl.col("date").filter(state == v).max().alias(f"_{f}_{v}") for f, (state, *_) in enumerate(families) for v in (1, -1)],
        )
    )  # fmt: skip
