"""The rebuild plan: whether a run may build on the published one, and from which date.

A published run leaves its state (``warehouse.snapshots.RUN_STATE``: source,
as-of, the transform fingerprint and how far it read the lake) next to the
tables it published. ``incremental_base`` reads that state back and decides:
either the published tables seed this run and everything before the returned
date is unchanged, or the reason the run must rebuild every table. The state
is written by ``run_state`` and read here, in one place.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from contracts.tables import QUARANTINE, TABLES
from flows.settings import Settings
from transforms.graph import DERIVED_BARS, prices_from, seed_reads
from transforms.incremental import first_changed_session
from transforms.marts import MartParams
from warehouse import snapshots
from warehouse.lake import WITHDRAWN_AT, ascending, splice
from warehouse.marts import read_published as read_published_mart
from warehouse.quality import in_screen_order, quarantine_keys, screen_rules
from warehouse.query import read_sql, read_tables

# The run state's record of the lake's year files as the run listed them: the
# largest status-change time among them (``Lake.bar_files``). A file written,
# replaced or added since has a later one: runs take the data directory's lock in
# turn, so the next run's land writes seconds after this run listed the files
# (the clock's tick is milliseconds); a file at exactly this time is this run's.
LAKE_LISTED = "lake_listed_ctime_ns"


def run_state(
    source: str, as_of: date, fingerprint: str, prices: pl.DataFrame, lake_listed: int | None = None
) -> dict:
    """What the next run needs to build on this one: what ``incremental_base`` and ``lake_read_plan`` check."""
    state = {
        "source": source, "as_of": as_of, "fingerprint": fingerprint,
        "ingested_through": prices["ingested_at"].max(),
    }
    if lake_listed is not None:
        state[LAKE_LISTED] = lake_listed
    return state


CODE_PACKAGES = ("contracts", "flows", "transforms", "warehouse")


def code_digest(root: Path = Path(__file__).resolve().parents[1], packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """A hash of the pipeline's source files.

    Not the git commit: a working tree with local edits, or an installed copy
    without git, would then let tables built by other code seed a run.
    """
    digest = hashlib.sha256()
    for path in sorted(p for pkg in packages for p in (root / pkg).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def transform_fingerprint(params: MartParams, settings: Settings, source: str) -> str:
    """Everything besides the bars that decides the marts' values: two runs with
    the same fingerprint build the same rows from the same bars."""
    # The jump bounds decide which bars are clean, as the code does.
    # The crypto close too: bars of one convention never seed a run of the other.
    payload = repr((
        code_digest(), source, settings.exchange_calendar, settings.crypto_close,
        sorted(settings.jump_bounds.items()), params,
    ))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def published_base_state(settings: Settings, source: str, fingerprint: str) -> dict | str:
    """The published run's state if it may seed a run of ``source`` with ``fingerprint``, or why not
    (the checks ``incremental_base`` and ``lake_read_plan`` share)."""
    if not settings.incremental:
        return "incremental rebuilds are switched off (XASSET_INCREMENTAL=false)"
    state = snapshots.published_state(settings.data_dir)
    if state is None:
        return "there is no published run to build on"
    if state.get("source") != source or state.get("fingerprint") != fingerprint:
        return "the published run was built from another source, code version or settings"
    return state


def incremental_base(
    settings: Settings, source: str, fingerprint: str, as_of: date,
    prices: pl.DataFrame, assets: pl.DataFrame, fundamentals: pl.DataFrame | None,
    stored: pl.DataFrame | None = None, withdrawn: pl.DataFrame | None = None,
    sessions: pl.Series | None = None, params: MartParams | None = None, narrow: NarrowRead | None = None,
) -> tuple[dict[str, pl.DataFrame], date] | str:
    """The published tables and the first date to rebuild from, or why the run must rebuild everything.

    The published run can seed this one only if it was built from the same
    source, code and settings (its fingerprint) for an earlier or equal as-of,
    with the same asset metadata; then everything before the first date of a
    bar landed after it read the lake (``ingested_at``), of a new fundamentals
    snapshot, or after its as-of is unchanged.

    With the run's ``sessions`` and mart ``params``, each seed table is read only as far
    back as the graph's nodes read it from that date (``seed_reads``: e.g. the factor
    metrics from it on); without them, as far as ``seed_reads`` bounds it without a date.

    ``narrow``: ``prices`` holds the bars of a bounded read (``NarrowRead``), compared with
    the published ones from where it holds them all.
    """
    state = published_base_state(settings, source, fingerprint)
    if isinstance(state, str):
        return state
    previous_as_of = date.fromisoformat(state["as_of"])
    if previous_as_of > as_of:
        return f"the published run is as of {previous_as_of}, later than {as_of}"
    candidates = [previous_as_of + timedelta(days=1)]
    read_through = datetime.fromisoformat(state["ingested_through"])
    landed = prices.filter(pl.col("ingested_at") > read_through)["date"].min()
    if landed is not None:
        candidates.append(landed)
    # Bars (clean or not: ``stored`` is the lake before the screen) landed or
    # withdrawn since the published run read the lake.
    touched = None
    if stored is not None:
        touched = stored.filter(pl.col("ingested_at") > read_through).select("symbol", "date")
        if withdrawn is not None and withdrawn.height:
            gone = withdrawn.filter(pl.col(WITHDRAWN_AT) > read_through).select("symbol", "date")
            touched = pl.concat([touched, gone])
    # The small tables first: a changed asset or snapshot rules the run out
    # before the large seed tables (tens of millions of rows) are read.
    dim, fund = TABLES["dim_asset"], TABLES["fact_fundamentals"]
    try:
        small = _read_seed(settings.warehouse_path, [dim.name, fund.name])
    except Exception as exc:
        return unreadable_warehouse(settings.warehouse_path, exc)
    before = small.get(dim.name, pl.DataFrame(schema=dim.polars_schema)).filter(pl.col("source") != "derived")
    if before.join(dim.conform(assets), on=dim.column_names, how="anti", nulls_equal=True).height:
        return "asset metadata (names, classes, sectors) changed since the published run"
    if fundamentals is not None and fundamentals.height:
        stored = small.get(fund.name, pl.DataFrame(schema=fund.polars_schema))
        now = fund.conform(fundamentals)
        if stored.join(now, on=fund.column_names, how="anti", nulls_equal=True).height:
            return "stored fundamentals snapshots changed since the published run"
        new = now.join(stored, on=fund.column_names, how="anti", nulls_equal=True)
        if new.height:
            candidates.append(new["as_of"].min())
    touched = touched if touched is not None else prices.clear().select("symbol", "date")
    try:
        # The published bars against the clean bars now: a stored bar revised
        # into a quarantined value, one withdrawn from the input, or one whose
        # plausibility changed with its neighbours (a jump the next bar reverts)
        # differs from what the published run read, though no clean bar is new.
        # Only the bars that comparison looks at are read (``published_bars_compared``).
        published_bars = published_bars_compared(
            lambda where: _read_seed(settings.warehouse_path, ["fact_prices"], {"fact_prices": where}).get("fact_prices"),
            prices, touched, previous_as_of,
        )
    except Exception as exc:
        return unreadable_warehouse(settings.warehouse_path, exc)
    if published_bars is None:
        return unreadable_warehouse(settings.warehouse_path, "it has no fact_prices table")
    changed = first_published_difference(published_bars, prices, touched, previous_as_of, narrow)
    if changed is not None:
        candidates.append(changed)
    since = min(candidates)
    # Then, with the first date to rebuild from known, the tables the mart graph's
    # nodes read back when built incrementally, each only as far as its nodes read
    # it (``seed_reads``: fact_prices' derived index bars, the factor scores from
    # their horizon before ``since``, ...), filtered in the scan.
    if sessions is not None and params is not None:
        reads = seed_reads(sessions=sessions, params=params, since=since)
    else:
        reads = seed_reads()
    large = [t for t in reads if t not in small]
    try:
        previous = small | _read_seed(settings.warehouse_path, large, reads)
    except Exception as exc:
        return unreadable_warehouse(settings.warehouse_path, exc)
    if "fact_prices" not in previous:
        return unreadable_warehouse(settings.warehouse_path, "it has no fact_prices table")
    return previous, since


# Days before the earliest touched date the published bars are searched for
# each symbol's last bar before its touched range; a symbol without one there
# (a gap, or a new or vanished symbol) is compared over its whole history.
NEIGHBOUR_SEARCH_DAYS = 31


def first_published_difference(
    published: pl.DataFrame, clean: pl.DataFrame, touched: pl.DataFrame, previous_as_of: date,
    narrow: NarrowRead | None = None,
) -> date | None:
    """The first date at which the clean bars differ from the published ones (``first_changed_session``).

    Not over the whole lake (7 CPU s for 9 M bars): a symbol's bars can only
    differ from its first *touched* date on (a bar landed or withdrawn since
    the published run read the lake, given in ``touched``; at the latest the
    day after the published as-of) and at the last published bar before it,
    whose next bar may have changed (the jump rules compare a bar with its
    clean neighbours; the bars between are not published). So each symbol is
    compared from that last published bar on; a symbol with none in the
    ``NEIGHBOUR_SEARCH_DAYS`` before its touched date over its whole history.
    A symbol with no bar in that range and nothing touched is unchanged.

    With ``narrow`` (``clean`` holds, of a symbol not in ``narrow.whole``, its first bar and
    its bars from ``narrow.bars_from`` on), such a symbol is compared from ``narrow.bars_from``:
    its clean bars before it are the published ones (``merge_published``).
    """
    lo = comparison_start(touched, previous_as_of)
    recent_published = published.filter(pl.col("date") >= lo)
    recent_clean = clean.filter(pl.col("date") >= lo)
    start, far = _comparison_starts(recent_published, recent_clean, touched, previous_as_of)

    def window(full: pl.DataFrame, recent: pl.DataFrame) -> pl.DataFrame:
        near = recent.join(start, on="symbol").filter(pl.col("date") >= pl.col("_from")).drop("_from")
        if far.is_empty():
            return near
        whole = full.filter(pl.col("symbol").is_in(far.implode()))
        if narrow is not None:
            kept = pl.Series(sorted(narrow.whole), dtype=pl.String).implode()
            whole = whole.filter((pl.col("date") >= narrow.bars_from) | pl.col("symbol").is_in(kept))
        return pl.concat([near, whole])

    return first_changed_session(window(published, recent_published), window(clean, recent_clean))


def comparison_start(touched: pl.DataFrame, previous_as_of: date) -> date:
    """The first date of the published bars ``first_published_difference`` compares (all symbols)."""
    after = previous_as_of + timedelta(days=1)
    return min(after, touched["date"].min() or after) - timedelta(days=NEIGHBOUR_SEARCH_DAYS)


def _comparison_starts(
    recent_published: pl.DataFrame, recent_clean: pl.DataFrame, touched: pl.DataFrame, previous_as_of: date
) -> tuple[pl.DataFrame, pl.Series]:
    """Per symbol, the last published bar before its first touched date (``_from``), and the
    symbols without one since ``comparison_start`` (compared over their whole history)."""
    after = previous_as_of + timedelta(days=1)
    per = touched.group_by("symbol").agg(pl.col("date").min().alias("_t"))
    symbols = pl.concat([recent_published["symbol"], recent_clean["symbol"], touched["symbol"]]).unique()
    first = (
        symbols.to_frame().join(per, on="symbol", how="left")
        .select("symbol", pl.min_horizontal(pl.lit(after), pl.col("_t")).alias("_t"))
    )
    start = (
        recent_published.select("symbol", "date").join(first, on="symbol").filter(pl.col("date") < pl.col("_t"))
        .group_by("symbol").agg(pl.col("date").max().alias("_from"))
    )
    return start, first.join(start, on="symbol", how="anti")["symbol"]


def published_bars_compared(
    read: Callable[[list], pl.DataFrame | None], clean: pl.DataFrame, touched: pl.DataFrame, previous_as_of: date
) -> pl.DataFrame | None:
    """The published (not derived) bars ``first_published_difference`` reads, not all of them:
    every bar since ``comparison_start`` and the whole history of the symbols it
    compares whole. ``read(conditions)`` reads fact_prices' rows meeting them
    (``warehouse.query.read_tables``' conditions; None: no such table)."""
    not_derived = (DERIVED_BARS[0], "!=", DERIVED_BARS[2])
    lo = comparison_start(touched, previous_as_of)
    recent = read([not_derived, ("date", ">=", lo)])
    if recent is None:
        return None
    _, far = _comparison_starts(recent, clean.filter(pl.col("date") >= lo), touched, previous_as_of)
    if far.is_empty():
        return recent
    whole = read([not_derived, ("symbol", "in", tuple(far.sort().to_list()))])
    return pl.concat([recent.filter(~pl.col("symbol").is_in(far.implode())), whole])


# How a full rebuild's reason starts when the published warehouse cannot be
# read: that one is a warning, not a routine note.
UNREADABLE_WAREHOUSE = "cannot read the published warehouse"


def unreadable_warehouse(path: Path, reason: object) -> str:
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return f"{UNREADABLE_WAREHOUSE} {path} ({text[:300]}); rebuilding every table from the lake"


def _read_seed(
    path: Path, names: list[str], where: dict | None = None, order: dict | None = None
) -> dict[str, pl.DataFrame]:
    """Published tables (only the rows ``where`` names, see ``warehouse.query.read_tables``),
    each conformed to its contract (a table of another shape is an error).

    A table read whole that the run also publishes as a Parquet mart is read from the
    published run's mart (``warehouse.marts.read_published``: the same rows, published by the
    same switch, 2-4x faster to read than out of the DuckDB file); from the DuckDB file when
    the mart cannot stand for it. ``order`` (``read_tables``): tables read sorted (from the DuckDB file)."""
    where, order = where or {}, order or {}
    run_dir = Path(os.path.realpath(path)).parent
    out: dict[str, pl.DataFrame] = {}
    for n in names:
        if n in TABLES and TABLES[n].publish and not order.get(n) and (not where.get(n) or _from_day(TABLES[n], where[n])):
            # Whole, or from a day on: a year-partitioned mart's files from that year on.
            frame = read_published_mart(TABLES[n], run_dir / snapshots.MARTS_DIR, _from_day(TABLES[n], where.get(n)))
            if frame is not None:
                out[n] = frame
    rest = [n for n in names if n not in out]
    read = read_tables(path, rest, where, order) if rest else {}
    out |= {n: TABLES[n].conform(f) if n in TABLES else f for n, f in read.items()}
    return {n: out[n] for n in names if n in out}


def read_seeds_whole(settings: Settings, names: list[str]) -> dict[str, pl.DataFrame]:
    """Published tables read whole, for a node whose window of them was too short
    (``transforms.graph.SeedTooShort``)."""
    return _read_seed(settings.warehouse_path, names)


def _from_day(table, conditions) -> date | None:
    """The day of ``conditions`` when they are only "the partition column on/after a day"
    (``seed_reads``' window bound), which a year-partitioned mart reads from its year's files on."""
    if conditions and len(conditions) == 1:
        column, op, day = conditions[0]
        if op == ">=" and column == table.partition_year_by and isinstance(day, date):
            return day
    return None


# --- the bounded lake read -------------------------------------------------------------------


@dataclass(frozen=True)
class LakeRead:
    """The lake's year files a next-day run reads when the published run vouches for the rest.

    Every bar landed or withdrawn since the published run listed the lake is
    dated on or after ``changed_from`` (the first date of the bars newer deltas
    appended, 1 January of the first year of a year file written since, the
    date of a bar withdrawn since; at the latest the day after the published
    as-of). The bars from ``context_from`` on are read as the screen's context:
    a bar is judged by its clean neighbours (the jump rules), so the earlier
    bars' verdicts, and the bars themselves, are the published run's
    (``merge_published``). ``context_start``: ``context_from`` when the context
    is a few days (``Settings.lake_context_days``; the year files covering it
    are read and their bars before it left out); None: the whole year before
    ``changed_from``'s. ``whole``: symbols read whole (index
    assets, whose bars before the history start only feed the milestones and
    are not published; symbols without a year file before the context year).
    """

    files: list[str]
    changed_from: date
    whole: frozenset[str]
    run_id: str
    context_start: date | None = None
    # Symbols with a bar withdrawn since the published run read the lake: screened from the context
    # on even when no bar of theirs is left there (``merge_published``).
    withdrawn: frozenset[str] = frozenset()

    @property
    def context_from(self) -> date:
        return self.context_start if self.context_start is not None else date(self.changed_from.year - 1, 1, 1)


def lake_read_plan(
    settings: Settings, source: str, fingerprint: str, as_of: date,
    files: pl.DataFrame, withdrawn: pl.DataFrame, assets: pl.DataFrame | None,
    deltas: pl.DataFrame | None = None, context_days: int | None = None,
) -> LakeRead | str:
    """Which year files (``Lake.bar_files``) the run must read, or why it reads them all.

    A file is new to this run when its status-change time is after the largest
    the published run listed (``LAKE_LISTED``): from 1 January of its year, or,
    when only ``deltas`` (``Lake.delta_listing``) newer than that changed it and
    its year file is the one the published run read (``file_ctime_ns``), from
    their first date; a bar withdrawn since it read the lake counts from its
    date. Only when the published run could seed this one (``incremental_base``'s
    first checks) and recorded its listing.

    ``context_days``: the screen's context is the ``context_days`` days before the
    first changed date (``LakeRead.context_start``); None: the year before its year.
    """
    state = published_base_state(settings, source, fingerprint)
    if isinstance(state, str):
        return state
    if LAKE_LISTED not in state or "run_id" not in state or not state.get("ingested_through"):
        return "the published run did not record which lake files it read (an older version wrote it)"
    previous_as_of = date.fromisoformat(state["as_of"])
    if previous_as_of > as_of:
        return f"the published run is as of {previous_as_of}, later than {as_of}"
    if assets is None or files.is_empty():
        return "the lake holds no assets or bars"
    unnamed = files.filter(pl.col("year").is_null())
    if unnamed.height:
        return f"a lake file is not named by its year ({unnamed['path'][0]})"
    read_through = datetime.fromisoformat(state["ingested_through"])
    changed_from = first_changed_date(files, deltas, int(state[LAKE_LISTED]), previous_as_of)
    gone = withdrawn.filter(pl.col(WITHDRAWN_AT) > read_through) if withdrawn.height else withdrawn
    if gone.height:
        changed_from = min(changed_from, gone["date"].min())
    context_start = None if context_days is None else changed_from - timedelta(days=context_days)
    context = changed_from.year - 1 if context_start is None else context_start.year
    if files["year"].min() >= context:
        return f"the changed range (from {changed_from}) reaches the lake's first year"
    with_old = files.filter(pl.col("year") < context)["symbol"].unique()
    index_assets = assets.filter(pl.col("asset_class") == "index")["symbol"]
    whole = set(files["symbol"].unique().to_list()) - set(with_old.to_list()) | set(index_assets.to_list())
    read = files.filter((pl.col("year") >= context) | pl.col("symbol").is_in(sorted(whole)))
    return LakeRead(
        read["path"].to_list(), changed_from, frozenset(whole), str(state["run_id"]), context_start,
        frozenset(gone["symbol"].to_list()) if gone.height else frozenset(),
    )


def first_changed_date(files: pl.DataFrame, deltas: pl.DataFrame | None, listed: int, previous_as_of: date) -> date:
    """The first date a bar of the lake may differ from the one the lake held when listed at
    ``listed`` (a ``LAKE_LISTED``), or the day after ``previous_as_of`` if later (``lake_read_plan``).

    A (symbol, year) listed later (``ctime_ns``) changed from 1 January of its year, unless its
    year file is the one listed then (``file_ctime_ns``) and deltas newer than it hold its change:
    a delta only appends bars after the year file's (and the earlier deltas') last, so from their
    first date (``deltas``: ``Lake.delta_listing``)."""
    after = previous_as_of + timedelta(days=1)
    changed = files.filter(pl.col("ctime_ns") > listed).select("symbol", "year", *(
        ["file_ctime_ns"] if "file_ctime_ns" in files.columns else []))
    if changed.is_empty():
        return after
    jan1 = pl.date(pl.col("year"), 1, 1)
    if "file_ctime_ns" not in changed.columns or deltas is None:
        return min(after, changed.select(jan1.min()).item())
    newer = deltas.filter(pl.col("ctime_ns") > listed).group_by("symbol", "year").agg(pl.col("first").min())
    firsts = changed.join(newer, on=["symbol", "year"], how="left").select(
        pl.when(pl.col("file_ctime_ns") <= listed).then(pl.col("first")).otherwise(None).fill_null(jan1).min()
    ).item()
    return min(after, firsts)


def published_before(
    settings: Settings, plan: LakeRead, as_of: date, also: list | None = None, ordered: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The published run's bars (not the derived ones) dated before ``plan.changed_from`` (and
    meeting the conditions ``also``; ``ordered``: sorted by symbol and date), and its screen's
    quarantine rows of ``fact_prices`` (with ``quarantine_keys``' columns), from the published
    warehouse: what ``merge_published`` takes for the bars the run does not read."""
    first, second = screen_rules("fact_prices", as_of)
    where = {
        "fact_prices": [(DERIVED_BARS[0], "!=", DERIVED_BARS[2]), ("date", "<", plan.changed_from), *(also or [])],
        "quarantine": [("run_id", "==", plan.run_id), ("table_name", "==", "fact_prices"),
                       ("rule", "in", tuple(sorted(first | second)))],
    }  # fmt: skip
    order = {"fact_prices": ("symbol", "date")} if ordered else None
    read = _read_seed(settings.warehouse_path, ["fact_prices", "quarantine"], where, order)
    if "fact_prices" not in read:
        raise ValueError("it has no fact_prices table")
    quarantine = read.get("quarantine", pl.DataFrame(schema=QUARANTINE.polars_schema))
    return read["fact_prices"], quarantine_keys(quarantine.with_columns(pl.lit("").alias("run_id")))


@dataclass(frozen=True)
class NarrowRead:
    """A bounded read of the published bars (``published_bars_bounded``): of every symbol not in
    ``whole`` (``transforms.graph.whole_price_symbols`` and ``LakeRead.whole``) only its first bar
    and its bars from ``bars_from`` on, enough for an incremental build whose
    ``transforms.graph.prices_from`` is not before ``bars_from``. ``omitted``: per symbol and year
    of the bars left out, their newest ``ingested_at`` (``ingested_through``)."""

    bars_from: date
    whole: frozenset[str]
    omitted: pl.DataFrame

    def ingested_through(self, prices: pl.DataFrame):
        """The newest ``ingested_at`` of ``prices`` and the bars left out: the whole clean bars' (``run_state``)."""
        left_out = self.omitted["ingested_through"].cast(prices.schema["ingested_at"])
        return pl.concat([prices["ingested_at"], left_out]).max()


def narrow_bars_from(
    calendar: pl.Series, params: MartParams, plan: LakeRead
) -> date | None:
    """The first date of the published bars a bounded read needs (``NarrowRead``), or None (all):
    ``transforms.graph.prices_from`` of the earliest first changed date the rebuild plan can find
    without a symbol compared over its whole history (``comparison_start``: ``NEIGHBOUR_SEARCH_DAYS``
    before ``plan.changed_from``), and no later than ``plan.context_from`` (``merge_published``
    slices each read symbol's published bars up to a bar in the context year). The run checks
    ``prices_from`` again once it knows its first changed date, and reads all when it is earlier."""
    first = prices_from(calendar, params, plan.changed_from - timedelta(days=NEIGHBOUR_SEARCH_DAYS))
    return None if first is None else min(first, plan.context_from)


def published_first_date(settings: Settings, plan: LakeRead) -> date | None:
    """The first date of the published (not derived) bars before ``plan.changed_from``."""
    got = read_sql(settings.warehouse_path, "reads/published_bars_first_date.sql",
                   {"before": plan.changed_from, "own_only": True})
    if got is None:
        raise ValueError("it has no fact_prices table")
    return got["first"][0]


# Days into the context year within which nearly every symbol the run reads has its first clean
# bar (``merge_published``'s ``_f``; the first session of the year): the published bars after
# it are read only for the symbols whose first clean bar comes later (``published_bars_bounded``).
FIRST_CLEAN_DAYS = 31


def published_bars_bounded(
    settings: Settings, plan: LakeRead, as_of: date, bars_from: date, whole: frozenset[str], clean: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, NarrowRead]:
    """``published_before`` read narrow (``NarrowRead``): the published bars before
    ``plan.changed_from`` from ``bars_from`` on, every bar of the symbols in ``whole``, and each
    other symbol's first bar; its quarantine rows; and what the bars left out tell.

    Of a symbol read from the lake, ``merge_published`` keeps the published bars up to its first
    clean bar before ``plan.changed_from`` (in ``clean``, the screen of the bars read) and takes
    the later ones from the lake: only those up to it are read (the bars after
    ``FIRST_CLEAN_DAYS`` into the context year only of the symbols whose first clean bar is later)."""
    whole = frozenset(whole | plan.whole)
    symbols = tuple(sorted(whole))
    not_derived = (DERIVED_BARS[0], "!=", DERIVED_BARS[2])
    until = plan.context_from + timedelta(days=FIRST_CLEAN_DAYS)
    recent, quarantine = published_before(
        settings, plan, as_of, [("date", ">=", bars_from), ("date", "<", until)], ordered=True
    )
    firsts = (
        clean.filter(pl.col("date") < plan.changed_from)
        .group_by("symbol").agg(pl.col("date").min().alias("_f"))
    )
    late = tuple(sorted(firsts.filter(pl.col("_f") >= until)["symbol"].to_list()))
    path = settings.warehouse_path
    older = _read_seed(path, ["fact_prices"], {"fact_prices": [
        not_derived, ("date", "<", bars_from), ("symbol", "in", symbols)]}).get("fact_prices", recent.clear())
    if late:
        later = _read_seed(path, ["fact_prices"], {"fact_prices": [
            not_derived, ("date", ">=", until), ("date", "<", plan.changed_from), ("symbol", "in", late)]})
        older = pl.concat([older, later.get("fact_prices", recent.clear())], how="vertical_relaxed")
    firsts = read_sql(path, "reads/published_first_bars.sql", {"before": bars_from})
    years = read_sql(path, "reads/published_bar_years.sql", {"before": bars_from})
    if firsts is None or years is None:
        raise ValueError("it has no fact_prices table")
    named = pl.Series(symbols, dtype=pl.String).implode()
    firsts = TABLES["fact_prices"].conform(firsts).filter(~pl.col("symbol").is_in(named))
    # Each symbol's bars before ``bars_from`` (``older``, ``firsts``: a few thousand) come before its
    # recent ones, read sorted: spliced in (``warehouse.lake.splice``), the recent bars (~0.6 M a next
    # day at 2,000 equities) not sorted again; the ``later`` ones follow them, so then a sort.
    early = pl.concat([older, firsts], how="vertical_relaxed").sort("symbol", "date")
    bars = (
        splice(early, recent) if not late
        else pl.concat([recent, early], how="vertical_relaxed").sort("symbol", "date")
    )
    omitted = years.filter(~pl.col("symbol").is_in(named))
    return bars, quarantine, NarrowRead(bars_from, whole, omitted)


def omitted_files_gone(narrow: NarrowRead, files: pl.DataFrame) -> str | None:
    """Why the bars a bounded read left out are not the lake's any more (a year file of theirs the
    lake no longer holds; ``merge_published`` checks the bars it keeps), or None."""
    gone = narrow.omitted.select("symbol", "year").join(files.select("symbol", "year"), on=["symbol", "year"], how="anti")
    if gone.height:
        row = gone.sort("symbol", "year").row(0)
        return f"the lake no longer holds {row[0]}'s {row[1]} file the published run read"
    return None


def _symbol_runs(bars: pl.DataFrame) -> pl.DataFrame:
    """Per symbol of ``bars`` (sorted by symbol): ``symbol``, its first row ``_at`` and its rows ``_n``."""
    runs = bars.select(pl.col("symbol").rle()).unnest("symbol")
    return runs.select(
        pl.col("value").alias("symbol"),
        pl.col("len").cum_sum().shift(fill_value=0).cast(pl.Int64).alias("_at"),
        pl.col("len").cast(pl.Int64).alias("_n"),
    )


def _merge_bars(kept: list[pl.DataFrame], new: pl.DataFrame) -> pl.DataFrame:
    """The kept bars (one slice per symbol, each sorted by date) and the ``new`` ones sorted by
    symbol and date as one frame: each symbol's kept bars come before its new ones, so the
    frame is the two parts' slices of each symbol, in symbol order, copied once (not sorted
    again, ~9 M rows; not ``merge_sorted``, which compares and gathers row by row)."""
    new = new if ascending(new) else new.sort("symbol", "date")
    parts = {part["symbol"][0]: [part] for part in kept}
    for symbol, at, n in _symbol_runs(new).iter_rows():
        parts.setdefault(symbol, []).append(new.slice(at, n))
    if not parts:
        return new
    order = pl.Series(list(parts), dtype=pl.String).sort()
    merged = pl.concat([part for symbol in order for part in parts[symbol]], how="vertical").rechunk()
    return merged if ascending(merged) else merged.sort("symbol", "date")


def merge_published(
    plan: LakeRead, files: pl.DataFrame, stored: pl.DataFrame, clean: pl.DataFrame, quarantined: pl.DataFrame,
    published: pl.DataFrame, published_quarantine: pl.DataFrame, as_of: date,
) -> tuple[pl.DataFrame, pl.DataFrame] | str:
    """The clean bars and the screen's quarantine rows of the whole lake, from the screen of the
    files ``plan`` read (``clean``, ``quarantined``) and the published run's (``published_before``);
    or why they cannot be told apart (then the run reads the whole lake).

    Per symbol read from the context year (not ``plan.whole``): with its first
    two clean bars before ``plan.changed_from`` (``f`` < ``g``), the bars up to
    ``f`` are the published ones (nothing landed there, and their neighbours
    up to ``g`` are unchanged, so each keeps the verdict it had), the later ones
    are judged here (every neighbour of theirs, from ``f``, was screened with
    them). A symbol not read at all is the published run's whole.
    """
    whole = pl.Series(sorted(plan.whole), dtype=pl.String).implode()
    read = stored.filter(~pl.col("symbol").is_in(whole))["symbol"]
    # A symbol a bar was withdrawn from is read though none of its bars is left from the context on
    # (its published bars there would be kept whole, the withdrawn one with them).
    withdrawn = pl.Series(sorted(plan.withdrawn - plan.whole), dtype=pl.String)
    read = pl.concat([read, withdrawn]).unique() if withdrawn.len() else read.unique()
    cut = (
        clean.filter(pl.col("symbol").is_in(read.implode()) & (pl.col("date") < plan.changed_from))
        .group_by("symbol").agg(pl.col("date").min().alias("_f"), pl.col("date").len().alias("_n"))
    )
    short = read.to_frame().join(cut.filter(pl.col("_n") >= 2), on="symbol", how="anti")["symbol"].sort()
    if short.len():
        within = plan.context_from.year if plan.context_start is None else f"{plan.context_from} to {plan.changed_from}"
        return f"{short.len()} symbol(s) without two clean bars in {within} to start the screen from, e.g. {short[0]}"
    cut = cut.select("symbol", "_f")
    # Each symbol's published bars kept are the first of its run (those up to ``_f``; none of a
    # symbol read whole; all of a symbol not read), found by a binary search in each symbol's
    # run of the sorted frame: the (~6 M-row, 10-column) published frame is neither joined
    # nor filtered whole, only sliced, and copied once, by ``_merge_bars``
    # (``python -m bench --stages transform_next_day``, its ``step_cpu``).
    published = published if ascending(published) else published.sort("symbol", "date")
    runs = _symbol_runs(published).join(cut, on="symbol", how="left", maintain_order="left")
    days = published["date"].to_physical().to_numpy()  # days since 1970-01-01, as ``_f`` below
    runs = runs.with_columns(pl.col("_f").to_physical().alias("_f"))
    slices, last = [], []
    for symbol, at, n, f in runs.iter_rows():
        if symbol in plan.whole:
            continue
        keep = n if f is None else int(np.searchsorted(days[at : at + n], f, side="right"))
        if keep:
            slices.append(published.slice(at, keep))
            last.append(at + keep - 1)
    # The bar each read symbol starts from is the one the published run kept.
    first = clean.join(cut, on="symbol").filter(pl.col("date") == pl.col("_f")).drop("_f")
    was = (
        published[last].join(cut, on="symbol")
        .filter(pl.col("date") == pl.col("_f")).drop("_f")
    )
    differs = first.join(was, on=first.columns, how="anti", nulls_equal=True)
    if differs.height:
        return f"the published bar of {differs['symbol'][0]} on {differs['date'][0]} is not the stored one"
    # Every published bar kept still has its year file: its (symbol, year) pairs are where
    # either changes from the row before (each pair once when sorted).
    kept = pl.concat(slices, how="vertical") if slices else published.clear()
    year = pl.col("date").dt.year().cast(pl.Int32).alias("year")
    changes = (pl.col("symbol") != pl.col("symbol").shift()) | (pl.col("year") != pl.col("year").shift())
    gone = (
        kept.select("symbol", year).filter(changes.fill_null(True))
        .join(files.select("symbol", "year"), on=["symbol", "year"], how="anti")
    )
    if gone.height:
        return f"the lake no longer holds {gone['symbol'][0]}'s {gone['year'][0]} file the published run read"
    new = clean.join(cut, on="symbol", how="left").filter(pl.col("_f").is_null() | (pl.col("date") > pl.col("_f")))
    prices = _merge_bars(slices, new.drop("_f"))
    old_q = (
        published_quarantine.filter(~pl.col("_symbol").is_in(whole))
        .join(cut, left_on="_symbol", right_on="symbol", how="left")
        .filter(pl.col("_f").is_null() | (pl.col("_date") < pl.col("_f"))).drop("_f")
    )
    new_q = (
        quarantine_keys(quarantined).join(cut, left_on="_symbol", right_on="symbol", how="left")
        .filter(pl.col("_f").is_null() | (pl.col("_date") > pl.col("_f"))).drop("_f")
    )
    return prices, in_screen_order(pl.concat([old_q, new_q]), "fact_prices", as_of)
