from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from transforms.events import DEFAULT_DEAD_BAND, correlation_events_since, mart_correlation_events


def _series(values: list[float | None], *, asset: str = "ALTS", benchmark: str = "^RUT", window: int = 90,
            start: date = date(2024, 1, 1)) -> pl.DataFrame:  # fmt: skip
    return pl.DataFrame(
        {
            "date": [start + timedelta(days=i) for i in range(len(values))],
            "asset": asset,
            "benchmark": benchmark,
            "window_days": window,
            "correlation": values,
        },
        schema={"date": pl.Date, "asset": pl.String, "benchmark": pl.String, "window_days": pl.Int32,
                "correlation": pl.Float64},  # fmt: skip
    )


def _held_signs(values: list[float | None], band: float) -> list[int | None]:
    """The sign with a dead band, one row at a time: beyond the band it is the
    value's sign, inside it the sign held before (none after a null)."""
    out, held = [], None
    for c in values:
        if c is None:
            held = None
        elif c > band:
            held = 1
        elif c < -band:
            held = -1
        out.append(held)
    return out


def _reference(frame: pd.DataFrame, k: int, levels: tuple[float, ...], band: float = DEFAULT_DEAD_BAND) -> list[tuple]:
    """A per-row loop over each series, one state machine per event family."""
    out = []
    for (asset, bench, window), g in frame.sort_values("date").groupby(["asset", "benchmark", "window_days"]):
        dates, corr = list(g["date"]), list(g["correlation"])
        clean = [None if c is None or np.isnan(c) else c for c in corr]
        families = [("sign", None, None)]
        families += [("level", L, lambda c, L=L: None if c is None else (1 if c >= L else -1)) for L in levels]
        for family, level, state_of in families:
            states = _held_signs(clean, band) if state_of is None else [state_of(c) for c in clean]
            confirmed = None
            run_len, run_start = 0, 0
            for i, s in enumerate(states):
                if s is None:
                    confirmed, run_len = None, 0
                    continue
                if i > 0 and states[i - 1] == s:
                    run_len += 1
                else:
                    run_len, run_start = 1, i
                if run_len != k:
                    continue
                if confirmed == -s:
                    prev = [j for j in range(run_start) if states[j] == s]
                    j = prev[-1] if prev else None
                    if family == "sign":
                        event = "turned_positive" if s == 1 else "turned_negative"
                    else:
                        event = "crossed_above" if s == 1 else "crossed_below"
                    out.append((dates[i], asset, bench, window, event, corr[i],
                                dates[j] if j is not None else None, i - j if j is not None else None, level))  # fmt: skip
                confirmed = s
    return sorted(out, key=lambda r: (r[1], r[2], r[3], r[0], r[4], -99 if r[8] is None else r[8]))


def _rows(events: pl.DataFrame) -> list[tuple]:
    return events.select(
        "date", "asset", "benchmark", "window_days", "event", "correlation", "previous_date", "sessions_since", "level"
    ).rows()


def test_flicker_with_and_without_confirmation() -> None:
    # + + + | - (flicker) | + | - - - -
    f = _series([0.3, 0.2, 0.2, -0.1, 0.1, -0.2, -0.3, -0.4, -0.35])
    k1 = mart_correlation_events(f, levels=())
    assert [(r[0], r[4], r[6], r[7]) for r in _rows(k1)] == [
        (date(2024, 1, 4), "turned_negative", None, None),
        (date(2024, 1, 5), "turned_positive", date(2024, 1, 3), 2),
        (date(2024, 1, 6), "turned_negative", date(2024, 1, 4), 2),
    ]
    k3 = mart_correlation_events(f, levels=(), confirm_sessions=3)
    # One event, on the third negative session; the flicker's one-day negative
    # on Jan 4 is the last earlier negative session.
    assert [(r[0], r[4], r[5], r[6], r[7]) for r in _rows(k3)] == [
        (date(2024, 1, 8), "turned_negative", -0.4, date(2024, 1, 4), 4),
    ]
    assert k3["description"][0] == (
        "The 90-session correlation between ^RUT and ALTS turned negative (-0.40), holding for 3 sessions, "
        "for the first time since 2024-01-04."
    )


def test_flicker_back_to_the_confirmed_sign_is_not_an_event() -> None:
    f = _series([-0.3, -0.2, -0.2, 0.1, -0.1, -0.2, -0.3])
    assert mart_correlation_events(f, levels=(), confirm_sessions=3).is_empty()
    assert len(mart_correlation_events(f, levels=(), confirm_sessions=1)) == 2


def test_nulls_break_the_series_and_zero_holds_the_sign() -> None:
    f = _series([0.3, None, -0.2, 0.0, 0.2, -0.1])
    ev = mart_correlation_events(f, levels=())
    # 0.3 -> null -> -0.2: no event (the null breaks the series); the zero is
    # inside the dead band and keeps the negative sign, so -> 0.2 is a change;
    # 0.2 -> -0.1 is another ("since" the zero day, which was held negative).
    assert [(r[0], r[4], r[6], r[7]) for r in _rows(ev)] == [
        (date(2024, 1, 5), "turned_positive", date(2024, 1, 1), 4),
        (date(2024, 1, 6), "turned_negative", date(2024, 1, 4), 2),
    ]
    assert ev["description"][1] == (
        "The 90-session correlation between ^RUT and ALTS turned negative (-0.10) for the first time since 2024-01-04."
    )


def test_sign_changes_only_past_the_dead_band() -> None:
    # Wobbles inside +-0.05 keep the positive sign; -0.06 is past the band on
    # the negative side, then 0.051 past it on the positive side.
    values = [0.3, 0.04, -0.03, 0.02, -0.04, -0.06, 0.01, 0.049, -0.05, 0.051]
    ev = mart_correlation_events(_series(values), levels=())
    assert [(r[0], r[4]) for r in _rows(ev)] == [
        (date(2024, 1, 6), "turned_negative"),
        (date(2024, 1, 10), "turned_positive"),
    ]
    # Without a band every crossing of zero is an event.
    assert mart_correlation_events(_series(values), levels=(), dead_band=0.0).height == 6
    # A wider band sees no change at all; the band is a setting.
    assert mart_correlation_events(_series(values), levels=(), dead_band=0.1).is_empty()
    with pytest.raises(ValueError):
        mart_correlation_events(_series(values), dead_band=-0.01)


def test_a_series_starting_inside_the_band_has_no_sign_until_it_leaves() -> None:
    ev = mart_correlation_events(_series([0.01, -0.02, 0.03, -0.2, 0.3]), levels=())
    assert [(r[0], r[4], r[6]) for r in _rows(ev)] == [(date(2024, 1, 5), "turned_positive", None)]


def test_descriptions_never_contradict_their_rounding() -> None:
    ev = mart_correlation_events(_series([0.6, 0.4996, 0.5001, -0.3]), levels=(0.5,))
    text = dict(zip(ev["date"].to_list(), ev["description"].to_list(), strict=False))
    assert "fell below 0.50 (0.4996)" in text[date(2024, 1, 2)]
    assert "rose above 0.50 (0.50)" in text[date(2024, 1, 3)]
    zero = mart_correlation_events(_series([0.2, -0.001, 0.0004]), levels=(), dead_band=0.0)
    assert [d.split("(")[1].split(")")[0] for d in zero["description"]] == ["-0.001", "0.0004"]
    assert not zero["description"].str.contains(r"\(-?0\.00\)").any()


@pytest.mark.parametrize("band", [0.0, 0.05, 0.2])
def test_events_since_carry_the_held_sign(band: float) -> None:
    # The incremental path must see the sign held inside the band before the
    # new rows, and the earlier dates of each held sign, as the full build does.
    rng = np.random.default_rng(7)
    values = list(np.round(0.25 * np.sin(np.arange(160) / 5) + rng.normal(0, 0.06, 160), 3))
    values[40] = None
    frames = [_series(values, asset=a) for a in ("A", "B")]
    whole = pl.concat(frames)
    sessions = whole["date"].unique().sort()
    full = mart_correlation_events(whole, levels=(0.3,), dead_band=band)
    assert full.filter(pl.col("level").is_null()).height > 3
    for cut in (sessions[30], sessions[41], sessions[100], sessions[-1]):
        prev = whole.filter(pl.col("date") < cut)
        for recent in (2, 12, 260):  # the answers looked up in a recent window first, then further back
            got = correlation_events_since(
                prev, mart_correlation_events(prev, levels=(0.3,), dead_band=band), whole.filter(pl.col("date") >= cut),
                sessions, cut, levels=(0.3,), dead_band=band, recent_sessions=recent,
            )  # fmt: skip
            assert got.equals(full), (cut, recent)


@pytest.mark.parametrize("recent", [1, 3, 260])
def test_events_since_look_before_the_recent_window(recent: int) -> None:
    # The held sign and the last date of each state are first looked up in the previous rows
    # of the last ``recent`` sessions; a series whose answer lies only before them must be
    # looked up in all of its rows (with recent=3 every answer below is older than the window).
    a = _series([0.4, -0.4] + [0.01] * 10 + [0.4], asset="A")  # negative held inside the band
    b = _series([0.6] + [0.2] * 11 + [0.35], asset="B")  # back above 0.3 first time since day 0
    c = _series([0.4, None] + [0.02] * 10 + [0.5], asset="C")  # a null: no sign held
    d = _series([0.4] * 12 + [-0.4], asset="D")  # a change whose earlier state is in the window
    whole = pl.concat([a, b, c, d])
    sessions = whole["date"].unique().sort()
    cut = sessions[-1]
    prev = whole.filter(pl.col("date") < cut)
    full = mart_correlation_events(whole, levels=(0.3,))
    got = correlation_events_since(
        prev, mart_correlation_events(prev, levels=(0.3,)), whole.filter(pl.col("date") >= cut), sessions, cut,
        levels=(0.3,), recent_sessions=recent,
    )  # fmt: skip
    assert got.equals(full)
    new = {(r[1], r[4]): r[6] for r in _rows(full.filter(pl.col("date") == cut))}
    day0 = date(2024, 1, 1)
    assert new == {("A", "turned_positive"): day0, ("A", "crossed_above"): day0, ("B", "crossed_above"): day0,
                   ("C", "crossed_above"): day0,
                   ("D", "turned_negative"): None, ("D", "crossed_below"): None}  # fmt: skip


def test_level_crossings_and_first_time_on_record() -> None:
    f = _series([0.4, 0.5, 0.49, 0.6, -0.6, -0.5], asset="BTC", benchmark="^GSPC", window=30)
    ev = mart_correlation_events(f, levels=(0.5, -0.5))
    got = [(r[0], r[4], r[8], r[6]) for r in _rows(ev)]
    assert got == [
        (date(2024, 1, 2), "crossed_above", 0.5, None),  # equal to the level counts as at/above
        (date(2024, 1, 3), "crossed_below", 0.5, date(2024, 1, 1)),
        (date(2024, 1, 4), "crossed_above", 0.5, date(2024, 1, 2)),
        (date(2024, 1, 5), "crossed_below", -0.5, None),
        (date(2024, 1, 5), "crossed_below", 0.5, date(2024, 1, 3)),
        (date(2024, 1, 5), "turned_negative", None, None),
        (date(2024, 1, 6), "crossed_above", -0.5, date(2024, 1, 4)),
    ]
    first = ev.row(0, named=True)["description"]
    assert first == (
        "The 30-session correlation between ^GSPC and BTC rose above 0.50 (0.50) for the first time on record."
    )
    assert "fell below -0.50 (-0.60)" in ev.row(3, named=True)["description"]


def test_confirm_sessions_must_be_positive() -> None:
    with pytest.raises(ValueError):
        mart_correlation_events(_series([0.1]), confirm_sessions=0)


def _real_correlations(real_data: Path) -> pl.DataFrame:
    """30/90-session rolling correlations of crypto vs SPY on NYSE sessions, with pandas."""
    base = real_data / "pratham093-AEGIS"
    spy = pd.read_csv(base / "SPY.csv", skiprows=[1], index_col="Date", parse_dates=True)["Close"]
    frames = []
    for coin in ("BTC", "ETH", "SOL"):
        c = pd.read_csv(base / f"{coin}-USD.csv", skiprows=[1], index_col="Date", parse_dates=True)["Close"]
        px = pd.DataFrame({"a": c.reindex(spy.index), "b": spy})  # crypto sampled on sessions
        r = np.log(px).diff()
        for w in (30, 90):
            corr = r["a"].rolling(w).corr(r["b"])
            frames.append(
                pd.DataFrame(
                    {"date": spy.index.date, "asset": coin, "benchmark": "SPY", "window_days": w,
                     "correlation": corr.values}  # fmt: skip
                )
            )
    df = pd.concat(frames, ignore_index=True)
    # A gap in one series (e.g. a restated window) must break it.
    df.loc[(df.asset == "ETH") & (df.date >= date(2023, 5, 1)) & (df.date < date(2023, 5, 10)), "correlation"] = np.nan
    return pl.from_pandas(df).with_columns(pl.col("correlation").fill_nan(None), pl.col("window_days").cast(pl.Int32))


@pytest.mark.parametrize("k", [1, 3])
def test_events_match_reference_loop_on_real_correlations(real_data: Path, k: int) -> None:
    corr = _real_correlations(real_data)
    ev = mart_correlation_events(corr, levels=(0.5, -0.5, 0.3), confirm_sessions=k)
    # The dead band is what keeps real correlations near zero from flickering.
    assert ev.filter(pl.col("level").is_null()).height < mart_correlation_events(
        corr, levels=(), confirm_sessions=k, dead_band=0.0
    ).height
    pdf = corr.to_pandas()
    pdf["date"] = pdf["date"].dt.date
    pdf["correlation"] = pdf["correlation"].astype(object).where(pdf["correlation"].notna(), None)
    want = _reference(pdf, k, (0.5, -0.5, 0.3))
    got = _rows(ev)
    assert len(got) == len(want) > 20
    for g, w in zip(got, want, strict=True):
        assert g[:5] == tuple(w[:5]) and g[6:] == tuple(w[6:])
        assert g[5] == pytest.approx(w[5], abs=1e-12)
    assert ev["description"].str.starts_with("The ").all()
    assert ev.filter(pl.col("previous_date").is_null())["description"].str.ends_with("on record.").all()
