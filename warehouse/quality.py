"""Data-quality rules: compiled from the table contracts into dataframely schemas.

Each ``Table`` declares its rules next to its columns (``contracts.tables``):
types and nullability, the key, value bounds on columns (``gt``/``ge``/``le``,
floats finite by default) and row rules (``Rule``). Here they become one
dataframely schema per table and run (rules may depend on ``as_of`` and, for
the screen of raw inputs, on the exchange calendar: ``RuleInputs``), whose
``filter`` splits a frame into valid rows and per-rule failures.

What a failure means depends on the table (``Table.quarantine_bad_rows``):

* raw inputs (``fact_prices``): the row is *quarantined*, i.e. held out of
  this run and written to the ``quarantine`` table, naming where it came from
  (the lake's ``origin``: file and row, or the source's request); everything
  derived is computed from the clean rows. The lake keeps the row as landed.
* derived tables: any failing row fails the audit, and nothing is published.

Some findings are not errors and only *flag* (a warning in the run summary):
missing sessions in a symbol's history and 90% one-day moves in an equity's
adjusted close (a likely unadjusted split, but also what a real crash looks like).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import polars as pl

from warehouse.lake import ORIGIN
from contracts.schema import Column, LogicalType, RuleInputs, Table, strictly_increasing
from contracts.tables import QUARANTINE, TABLES
from contracts.vocabulary import CRYPTO_CLASSES, EQUITY_CLASSES

if TYPE_CHECKING:
    import dataframely as dy

# Any column with one of these names, in any table (including tables whose
# contract lives elsewhere), holds a 0-100 score.
SCORE_BOUNDS = (0.0, 100.0)
# A one-day move of 90% or more (either way, in log terms) in an adjusted
# close: what an unadjusted 1:10 split looks like.
SPLIT_LIKE_LOG_MOVE = math.log(10)
MAX_LISTED = 5


def _dy_column(logical: LogicalType) -> Callable[..., dy.Column]:
    # Imported here, not at the top: dataframely brings SQLAlchemy (~1 CPU-s), and
    # the CLI imports this module before Prefect starts the flow, while rows are
    # only screened later (docs/performance.md, "Per-run fixed cost").
    import dataframely as dy

    return {
        "string": dy.String,
        "date": dy.Date,
        "float": dy.Float64,
        "int": dy.Int32,
        "bigint": dy.Int64,
        "bool": dy.Bool,
        "timestamp": lambda **kw: dy.Datetime(time_zone="UTC", time_unit="us", **kw),
    }[logical]


def is_score(name: str) -> bool:
    return name == "alpha_score" or name.endswith("_score")


@dataclass(frozen=True)
class Compiled:
    schema: type[dy.Schema]
    # dataframely's rule name (e.g. ``close|min_exclusive``) -> our sentence.
    descriptions: dict[str, str]


def _bounds(col: Column) -> dict[str, float]:
    if col.type not in ("float", "int", "bigint"):
        return {}
    gt, ge, le = col.gt, col.ge, col.le
    if is_score(col.name) and gt is None and ge is None and le is None:
        ge, le = SCORE_BOUNDS
    out = {}
    if gt is not None:
        out["min_exclusive"] = gt
    if ge is not None:
        out["min"] = ge
    if le is not None:
        out["max"] = le
    return out


_BOUND_TEXT = {"min_exclusive": ">", "min": ">=", "max": "<="}


def compile_table(
    table: Table, as_of: date | RuleInputs, carry: tuple[str, ...] = (), neighbours: bool = False,
    key_proven: bool = False,
) -> Compiled:
    """The table's rules as a dataframely schema; ``carry`` names extra columns let through unchecked.

    ``neighbours``: the second pass, only the rules ``on_clean_rows`` (run over
    the rows that passed the first); otherwise every other rule. The
    descriptions cover every rule either way. ``key_proven``: the frame's
    primary key is known to be unique (``key_is_unique``), so dataframely's
    check of it (a hash of every key, most of the audit's time) is left out.
    """
    import dataframely as dy  # local: see _dy_column

    inputs = as_of if isinstance(as_of, RuleInputs) else RuleInputs(as_of)
    namespace: dict[str, object] = {name: dy.Any() for name in carry}
    desc: dict[str, str] = {}
    if neighbours:
        namespace |= {col.name: dy.Any() for col in table.columns}
    for col in table.columns if not neighbours else ():
        kwargs: dict[str, object] = {
            "nullable": col.nullable and col.name not in table.primary_key,
            "primary_key": col.name in table.primary_key and not key_proven,
            **_bounds(col),
        }
        if col.type == "float":
            kwargs["allow_nan"] = kwargs["allow_inf"] = not col.finite
            desc[f"{col.name}|nan"] = f"{col.name} is not NaN"
            desc[f"{col.name}|inf"] = f"{col.name} is finite"
        namespace[col.name] = _dy_column(col.type)(**kwargs)
        desc[f"{col.name}|nullability"] = f"{col.name} is not null"
        for k, op in _BOUND_TEXT.items():
            if k in kwargs:
                desc[f"{col.name}|{k}"] = f"{col.name} {op} {kwargs[k]:g}"
    if table.primary_key:
        desc["primary_key"] = f"({', '.join(table.primary_key)}) is unique"
    if table.unique and not neighbours:
        key = list(table.unique)
        namespace["key_is_unique"] = dy.rule()(lambda _s, key=key: pl.struct(key).is_unique())
        desc["key_is_unique"] = f"({', '.join(key)}) is unique"
    for rule in table.rules:
        if rule.on_clean_rows == neighbours:
            namespace[rule.name] = dy.rule()(lambda _s, rule=rule: rule.check(inputs))
        desc[rule.name] = rule.description.format(as_of=inputs.as_of)
    schema = type(f"{table.name}_rules", (dy.Schema,), namespace)
    return Compiled(schema, desc)


_LOGICAL: dict[type[pl.DataType], LogicalType] = {
    pl.String: "string", pl.Date: "date", pl.Float64: "float", pl.Int32: "int",
    pl.Int64: "bigint", pl.Boolean: "bool",
}


def contract_for(name: str, frame: pl.DataFrame) -> Table:
    """The declared contract, or for a table declared elsewhere one read off the frame.

    The latter checks only what applies by column name (scores in [0, 100]).
    """
    if name in TABLES:
        return TABLES[name]
    cols = tuple(
        Column(c, _LOGICAL[type(t)], "", nullable=True, finite=False)
        for c, t in frame.schema.items()
        if type(t) in _LOGICAL
    )
    return Table(name, "", cols)


@dataclass(frozen=True)
class Violation:
    table: str
    rule: str
    description: str
    rows: int
    first_key: dict


def check_frame(
    table: Table, frame: pl.DataFrame, as_of: date | RuleInputs, carry: tuple[str, ...] = ()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(valid rows, failures)``: failures has the row's columns, ``_rule`` and ``_description``.

    Valid rows have exactly the contract's columns; failures also keep the
    ``carry`` columns of ``frame`` (e.g. where the row came from).
    """
    carried = frame.select(carry)
    frame = pl.concat([table.conform(frame), carried], how="horizontal")
    proven = key_is_unique(frame, table.primary_key)
    good, failures = _filter(compile_table(table, as_of, carry, key_proven=proven), frame)
    if any(r.on_clean_rows for r in table.rules) and not good.is_empty():
        good, more = _filter(compile_table(table, as_of, carry, neighbours=True), good)
        failures = pl.concat([failures, more])
    return good.drop(carry), failures


def key_is_unique(frame: pl.DataFrame, key: Sequence[str]) -> bool:
    """Whether no two rows of ``frame`` share ``key``, where that is cheap to prove; False means
    "not proven" (dataframely's exact check then runs and names the duplicates).

    Proven by key order (``strictly_increasing``: most large tables come out of the
    transform in it) or, for a frame without nulls in the key, by as many distinct
    64-bit row hashes as rows (equal keys hash alike, so distinct hashes mean
    distinct keys; a collision only sends the frame to the exact check).
    """
    if not key or frame.height < 2:
        return bool(key)
    if frame.select(pl.sum_horizontal(pl.col(list(key)).null_count())).item():
        return False
    if strictly_increasing(frame, key):
        return True
    return frame.select(pl.struct(list(key)).hash().n_unique()).item() == frame.height


def _filter(compiled: Compiled, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    good, result = compiled.schema.filter(frame, cast=False)
    good = good.select(frame.columns)
    details = result.details()
    rule_cols = [c for c in details.columns if c not in frame.columns]
    if details.is_empty() or not rule_cols:
        return good, frame.clear().with_columns(pl.lit(None, pl.String).alias("_rule"), pl.lit(None, pl.String).alias("_description"))
    failures = (
        details.with_row_index("_row")
        .unpivot(index=["_row", *frame.columns], on=rule_cols, variable_name="_rule", value_name="_state")
        .filter(pl.col("_state").cast(pl.String) == "invalid")
        .sort("_row", "_rule")
        .drop("_row", "_state")
        .with_columns(pl.col("_rule").replace_strict(compiled.descriptions, default=pl.col("_rule")).alias("_description"))
        .select(*frame.columns, "_rule", "_description")
    )
    return good, failures


def _key_json(table: Table, row: dict) -> str:
    cols = list(table.key) or table.column_names
    return json.dumps({c: row[c] for c in cols}, default=str)


def audit_from(table: Table, since: date | None) -> date | None:
    """The first date of ``table``'s rows to audit when the rows before ``since`` were audited and
    published unchanged; None: the whole table.

    Only where the table's key contains its date column: then a row dated on or
    after ``since`` cannot share its key with an earlier one, so checking the key
    among the new rows checks it in the whole table.
    """
    if since is None or table.date_column is None or table.date_column not in table.key:
        return None
    return since


def _is_new(table: Table, since: date) -> pl.Expr:
    # A null date counts as new (warehouse.build.rows_from: never "before").
    col = pl.col(table.date_column)
    return col.is_null() | (col >= since)


# Operations a rule may use and still judge each row by that row's own values alone. A rule
# using anything else (a window, a shift, an aggregate, or an operation not listed) is taken to
# compare rows, and the incremental audit gives it earlier rows as context (``rows_to_audit``).
ROW_LOCAL_OPS = frozenset({
    "col", "lit", "abs", "is_in", "is_null", "is_not_null", "is_finite", "is_nan", "is_not_nan", "log", "exp",
    "sign", "sqrt", "not_", "when", "then", "otherwise", "cast", "strict_cast", "alias", "fill_nan",
})


def compares_rows(table: Table, as_of: date) -> bool:
    """Whether any of ``table``'s rules may judge a row by other rows (see ``ROW_LOCAL_OPS``)."""
    inputs = RuleInputs(as_of)
    for rule in table.rules:
        text = re.sub(r'"[^"]*"', '""', str(rule.check(inputs)))
        if set(re.findall(r"(\w+)\(", text)) - ROW_LOCAL_OPS:
            return True
    return False


def rows_to_audit(table: Table, frame: pl.DataFrame, since: date, as_of: date) -> pl.DataFrame:
    """The rows dated on or after ``since`` and, where a rule compares rows (``compares_rows``,
    e.g. ``.shift(1).over(..., order_by=date)``), the last earlier row of each key as context.

    The context rows were audited when they were published; their own
    failures are not counted (``violations``), but the first new row of every
    key is compared with the row before it exactly as in the whole table.
    """
    new = _is_new(table, since)
    if not compares_rows(table, as_of):
        return frame.filter(new)
    col = pl.col(table.date_column)
    earlier = pl.when(~new).then(col)
    groups = [k for k in table.key if k != table.date_column]
    latest = earlier.max().over(groups) if groups else earlier.max()
    return frame.filter(new | (col == latest))


def violations(
    frames: dict[str, pl.DataFrame], as_of: date, since: Mapping[str, date] | None = None,
) -> list[Violation]:
    """Every rule each frame breaks; ``since`` (table -> date): audit only that table's rows from
    the date on (``audit_from``, ``rows_to_audit``), the earlier ones having passed when published."""
    out: list[Violation] = []
    for name, frame in frames.items():
        if frame.is_empty():
            continue
        table = contract_for(name, frame)
        first = audit_from(table, (since or {}).get(name))
        if first is not None:
            frame = rows_to_audit(table, frame, first, as_of)
        _, failures = check_frame(table, frame, as_of)
        if first is not None:
            failures = failures.filter(_is_new(table, first))
        if failures.is_empty():
            continue
        for (rule, description), group in failures.group_by("_rule", "_description", maintain_order=True):
            first = group.row(0, named=True)
            keys = list(table.key) or table.column_names[:2]
            out.append(Violation(name, rule, description, group.height, {k: first[k] for k in keys}))
    return out


def rule_inputs(
    as_of: date,
    sessions: pl.Series | None = None,
    assets: pl.DataFrame | None = None,
    jump_bounds: Mapping[str, float] | None = None,
) -> RuleInputs:
    """What the screen's rules compare rows with: ``as_of``, the exchange ``sessions``
    (a Date series covering the rows) and, from ``assets`` (symbol, asset_class),
    the symbols that trade only on sessions and each symbol's jump bound
    (``jump_bounds``: asset class -> largest one-day move factor, every class
    of ``assets`` must have one). Without them, those rules hold."""
    session_inputs: dict[str, object] = {}
    if sessions is not None and assets is not None:
        on_sessions = assets.filter(pl.col("asset_class").is_in(EQUITY_CLASSES))["symbol"]
        session_inputs = {
            "sessions": tuple(sessions.to_list()),
            "session_symbols": tuple(sorted(on_sessions.unique().to_list())),
        }
    jumps = None
    if jump_bounds is not None and assets is not None:
        missing = sorted(set(assets["asset_class"].drop_nulls()) - set(jump_bounds))
        if missing:
            raise ValueError(
                f"no jump bound for asset class(es) {', '.join(missing)}: add them to XASSET_JUMP_BOUNDS"
            )
        pairs = assets.select("symbol", "asset_class").unique("symbol", keep="last").sort("symbol")
        jumps = tuple(
            (r["symbol"], float(jump_bounds[r["asset_class"]]))
            for r in pairs.iter_rows(named=True) if r["asset_class"] is not None
        )
    return RuleInputs(as_of, jump_bounds=jumps, **session_inputs)


def origin_text(origin: str | None) -> str:
    return origin if origin is not None else "unknown origin (landed before the lake kept origins)"


def screen(
    name: str,
    frame: pl.DataFrame,
    as_of: date,
    run_id: str = "",
    *,
    sessions: pl.Series | None = None,
    assets: pl.DataFrame | None = None,
    jump_bounds: Mapping[str, float] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a raw input into the rows a run may use and its ``quarantine`` rows.

    A row breaking several rules gets one quarantine row per rule, whose detail
    names the rule, where the row came from (``frame``'s ``origin`` column when
    it has one, e.g. ``BTC-USD.csv line 42``) and its values. ``sessions`` and
    ``assets`` (see ``rule_inputs``) enable the exchange-calendar rule, ``assets``
    and ``jump_bounds`` the jump rules. ``run_id``
    may be left empty and stamped later (``RunLog.record_quarantine``). The
    clean rows have exactly the contract's columns.
    """
    table = TABLES[name]
    if not table.quarantine_bad_rows:
        raise ValueError(f"{name} is audited as a whole, not screened row by row")
    carry = (ORIGIN,) if ORIGIN in frame.columns else ()
    good, failures = check_frame(table, frame, rule_inputs(as_of, sessions, assets, jump_bounds), carry)
    if failures.is_empty():
        return good, pl.DataFrame(schema=QUARANTINE.polars_schema)
    rows = [
        {
            "run_id": run_id,
            "table_name": name,
            "key": _key_json(table, r),
            "rule": r["_rule"],
            "detail": f"{r['_description']}; from {origin_text(r.get(ORIGIN))}; row: "
            + json.dumps({c: r[c] for c in table.column_names if c != "ingested_at"}, default=str),
        }
        for r in failures.iter_rows(named=True)
    ]
    # Duplicate keys break one rule once per copy: one quarantine row per key and rule.
    merged = (
        pl.DataFrame(rows, schema=QUARANTINE.polars_schema)
        .group_by("run_id", "table_name", "key", "rule", maintain_order=True)
        .agg(pl.col("detail").unique(maintain_order=True).str.join(" | "))
    )
    return good, QUARANTINE.conform(merged)


def screen_rules(name: str, as_of: date) -> tuple[set[str], set[str]]:
    """The rule names ``screen`` can give ``name``'s quarantine rows: (first pass, second pass).

    The second pass (rules ``on_clean_rows``, e.g. the jump rules) judges a row
    by its clean neighbours; ``screen`` lists its rows after the first pass's.
    """
    table = TABLES[name]
    second = {r.name for r in table.rules if r.on_clean_rows}
    return set(compile_table(table, as_of).descriptions) - second, second


def quarantine_keys(quarantine: pl.DataFrame) -> pl.DataFrame:
    """``quarantine`` (rows of a table keyed by symbol and date, e.g. ``fact_prices``)
    with its key's ``_symbol`` and ``_date`` as columns."""
    key = pl.col("key").str.json_decode(pl.Struct({"symbol": pl.String(), "date": pl.String()}))
    return quarantine.with_columns(
        key.struct.field("symbol").alias("_symbol"),
        key.struct.field("date").str.to_date(strict=False).alias("_date"),
    )


def in_screen_order(quarantine: pl.DataFrame, name: str, as_of: date) -> pl.DataFrame:
    """``screen``'s quarantine rows of ``name`` (keyed by symbol and date) from parts screened
    apart, in the order one ``screen`` of all their bars gives them: the first pass's rows by
    symbol, date and rule, then the second pass's the same way."""
    _, second = screen_rules(name, as_of)
    keyed = quarantine if "_symbol" in quarantine.columns else quarantine_keys(quarantine)
    return QUARANTINE.conform(
        keyed.with_columns(pl.col("rule").is_in(sorted(second)).alias("_pass"))
        .sort("_pass", "_symbol", "_date", "rule", maintain_order=True)
    )


WITHDRAWN_RULE = "withdrawn"


def withdrawn_quarantine(withdrawn: pl.DataFrame, run_id: str = "") -> pl.DataFrame:
    """``quarantine`` rows for bars withdrawn because the input no longer holds them."""
    table = TABLES["fact_prices"]
    rows = [
        {
            "run_id": run_id,
            "table_name": table.name,
            "key": _key_json(table, r),
            "rule": WITHDRAWN_RULE,
            "detail": f"no longer in the input (a files run's input is a snapshot): withdrawn; "
            f"was from {origin_text(r.get(ORIGIN))}; row: "
            + json.dumps({c: r[c] for c in table.column_names if c != "ingested_at"}, default=str),
        }
        for r in withdrawn.iter_rows(named=True)
    ]
    return QUARANTINE.conform(pl.DataFrame(rows, schema=QUARANTINE.polars_schema))


def withdrawal_summary(withdrawn: pl.DataFrame, removed: set[str]) -> str | None:
    """One warning line: which symbols lost how many bars, and which left the input entirely."""
    if withdrawn.is_empty():
        return None
    per = (
        withdrawn.group_by("symbol")
        .agg(pl.len().alias("n"), pl.col("date").min().alias("first"), pl.col(ORIGIN).first().alias("origin"))
        .sort("symbol")
    )
    listed = ", ".join(
        f"{r['symbol']} ({r['n']} bar(s) from {r['first']}"
        + ("; no file holds it any more" if r["symbol"] in removed else f", was {origin_text(r['origin'])}")
        + ")"
        for r in per.head(MAX_LISTED).iter_rows(named=True)
    )
    more = f" and {per.height - MAX_LISTED} more symbol(s)" if per.height > MAX_LISTED else ""
    return (
        f"withdrawn {withdrawn.height} stored bar(s) the input no longer holds: {listed}{more} "
        "-- see the quarantine table (rule withdrawn)"
    )


def quarantine_summary(quarantined: pl.DataFrame) -> str | None:
    """One line for the run summary, or None when nothing was quarantined."""
    if quarantined.is_empty():
        return None
    by_rule = quarantined.group_by("table_name", "rule").len().sort("table_name", "rule")
    parts = ", ".join(f"{r['table_name']}.{r['rule']}: {r['len']}" for r in by_rule.iter_rows(named=True))
    first = quarantined.row(0, named=True)
    return (
        f"quarantined {quarantined['key'].n_unique()} input row(s), published the clean rows ({parts}); "
        f"e.g. {first['table_name']} {first['key']}: {first['detail']} -- see the quarantine table"
    )


def session_gaps(
    prices: pl.DataFrame, assets: pl.DataFrame, as_of: date,
    sessions: Callable[[date, date], pl.Series],
) -> list[str]:
    """Flag symbols missing expected dates between their first and last bar.

    Equities and indices are expected on every session ``sessions(start, end)``
    returns (the run's exchange calendar, which the caller passes: the
    warehouse does not know calendars), crypto on every UTC day.
    """
    if prices.is_empty() or assets is None or assets.is_empty():
        return []
    per = missing_dates(prices, assets, as_of, sessions)
    return gaps_warning(per.head(MAX_LISTED), per.height)


def missing_dates(
    prices: pl.DataFrame, assets: pl.DataFrame, as_of: date, sessions: Callable[[date, date], pl.Series],
) -> pl.DataFrame:
    """(symbol, n, first) of each symbol missing expected dates (``session_gaps``' rule), sorted by symbol:
    how many it misses and the first one."""
    empty = pl.DataFrame(schema={"symbol": pl.String, "n": pl.UInt32, "first": pl.Date})
    spans = _short_of_bars(prices, assets, as_of, sessions)
    if spans.is_empty():
        return empty
    crypto = spans.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))
    equity = spans.filter(pl.col("asset_class").is_in(EQUITY_CLASSES))
    expected = [
        crypto.select("symbol", pl.date_ranges("first", "last").alias("date")).explode("date"),
    ]
    if not equity.is_empty():
        cal = sessions(equity["first"].min(), equity["last"].max()).alias("date").to_frame()
        expected.append(
            equity.join(cal, how="cross").filter(pl.col("date").is_between(pl.col("first"), pl.col("last")))
            .select("symbol", "date")
        )
    missing = pl.concat(expected).join(prices.select("symbol", "date"), on=["symbol", "date"], how="anti")
    if missing.is_empty():
        return empty
    return missing.group_by("symbol").agg(pl.len().alias("n"), pl.col("date").min().alias("first")).sort("symbol")


def gaps_warning(listed: pl.DataFrame, symbols: int) -> list[str]:
    """``session_gaps``' line: ``symbols`` symbols miss dates, the first ``MAX_LISTED`` of them
    (``listed``: symbol, n, first; sorted by symbol) named."""
    if not symbols:
        return []
    named = ", ".join(f"{r['symbol']} ({r['n']}, first {r['first']})" for r in listed.head(MAX_LISTED).iter_rows(named=True))
    more = f" and {symbols - MAX_LISTED} more" if symbols > MAX_LISTED else ""
    return [f"gaps: {symbols} symbol(s) miss expected dates: {named}{more}"]


def _short_of_bars(
    prices: pl.DataFrame, assets: pl.DataFrame, as_of: date, sessions: Callable[[date, date], pl.Series],
) -> pl.DataFrame:
    """(symbol, first, last, asset_class) of the symbols with fewer distinct bar dates up to
    ``as_of`` than expected dates between their first and last bar (``session_gaps``'
    calendars): exactly those that miss one, found in one pass by counting instead of listing
    every expected date of every symbol, which ``session_gaps`` then does for these few only
    (a nightly run judges the whole of fact_prices)."""
    # The two columns it reads, not a copy of every column of every bar (the whole fact_prices).
    dated = prices.select("symbol", "date").filter(pl.col("date") <= as_of)
    if dated.is_empty():
        return pl.DataFrame(schema={"symbol": pl.String, "first": pl.Date, "last": pl.Date, "asset_class": pl.String})
    # Sessions counted within each symbol's own span: the same from a calendar over any wider range.
    cal = sessions(dated["date"].min(), as_of).cast(pl.Date).unique().sort()
    return short_spans(bar_spans(dated, cal), assets, cal)


def bar_spans(dated: pl.DataFrame, cal: pl.Series) -> pl.DataFrame:
    """Per symbol of ``dated`` (symbol, date): its first and last date, its distinct dates
    (``_days``) and those of them in ``cal`` (``_sessions``)."""
    # Whether a date is a session, looked up once per bar, not once per symbol inside its group
    # (0.24 s for 2,105 symbols' 2,105 bars: the calendar hashed again for each group).
    return dated.with_columns(pl.col("date").is_in(cal.implode()).alias("_on_session")).group_by("symbol").agg(
        pl.col("date").min().alias("first"), pl.col("date").max().alias("last"),
        pl.col("date").n_unique().alias("_days"),
        pl.col("date").filter(pl.col("_on_session")).n_unique().alias("_sessions"),
    )


def short_spans(spans: pl.DataFrame, assets: pl.DataFrame, cal: pl.Series) -> pl.DataFrame:
    """(symbol, first, last, asset_class) of the ``spans`` (``bar_spans``) with fewer dates than
    expected between their first and last (``cal``: the sorted sessions, reaching back to every first)."""
    spans = spans.join(assets.select("symbol", "asset_class"), on="symbol", how="inner")
    crypto = pl.col("asset_class").is_in(CRYPTO_CLASSES)
    equity = pl.col("asset_class").is_in(EQUITY_CLASSES)
    expected_sessions = (
        pl.Series(cal.search_sorted(spans["last"], side="right")).cast(pl.Int64)
        - pl.Series(cal.search_sorted(spans["first"], side="left")).cast(pl.Int64)
    )
    short = (crypto & (pl.col("_days") < (pl.col("last") - pl.col("first")).dt.total_days() + 1)) | (
        equity & (pl.col("_sessions") < pl.lit(expected_sessions))
    )
    return spans.filter(short).select("symbol", "first", "last", "asset_class")


def split_like_moves(prices: pl.DataFrame, assets: pl.DataFrame) -> list[str]:
    """Flag equity one-day moves of 90%+ in the adjusted close (possible unadjusted split)."""
    if prices.is_empty() or assets is None or assets.is_empty():
        return []
    equities = assets.filter(pl.col("asset_class").is_in(EQUITY_CLASSES))["symbol"].implode()
    return split_like_warning(log_moves(prices.filter(pl.col("symbol").is_in(equities))), assets)


def log_moves(prices: pl.DataFrame) -> pl.DataFrame:
    """(symbol, date, _m) of every one-day move of ``prices`` (symbol, date, adj_close) whose
    log size is ``SPLIT_LIKE_LOG_MOVE`` or more, any asset class, sorted by symbol and date."""
    # Each bar's previous one by date within its symbol (a window ordered by date), and only the
    # few moves found sorted: sorting all of fact_prices by symbol and date first took ~2 s of the
    # full run's audit at 2,000 equities (6.4 M rows), the ordered window ~0.3 s.
    previous = pl.col("adj_close").shift(1).over("symbol", order_by="date")
    return (
        prices.select("symbol", "date", "adj_close")
        .with_columns((pl.col("adj_close") / previous).log().alias("_m"))
        .filter(pl.col("_m").abs() >= SPLIT_LIKE_LOG_MOVE)
        .select("symbol", "date", "_m")
        .sort("symbol", "date")
    )


def split_like_warning(moves: pl.DataFrame, assets: pl.DataFrame) -> list[str]:
    """``split_like_moves``' line on the equities' ``moves`` (``log_moves``, sorted by symbol and date)."""
    if assets is None or assets.is_empty():
        return []
    equities = assets.filter(pl.col("asset_class").is_in(EQUITY_CLASSES))["symbol"].implode()
    moves = moves.filter(pl.col("symbol").is_in(equities))
    if moves.is_empty():
        return []
    listed = ", ".join(
        f"{r['symbol']} {r['date']} ({math.exp(r['_m']) - 1:+.0%})" for r in moves.head(MAX_LISTED).iter_rows(named=True)
    )
    return [f"possible unadjusted split (90%+ one-day move in adj_close, kept, please check the source): {listed}"]
