"""The warehouse's tables, declared once (see ``warehouse.schema``)."""

from __future__ import annotations

from warehouse.schema import Column as C
from warehouse.schema import Table

DIM_ASSET = Table(
    "dim_asset",
    "One row per asset in the run: what it is and where its prices come from.",
    (
        C("symbol", "string", "Canonical key: Yahoo ticker for equities and indices, base asset for crypto (BTC).", False),
        C("name", "string", "Display name; '[synthetic]' marks the offline sample market."),
        C("asset_class", "string", "index, etf, equity, crypto or index_crypto.", False),
        C("sector", "string", "GICS-style sector for stocks; null otherwise."),
        C("industry", "string", "Industry for stocks; null otherwise."),
        C("quote_currency", "string", "Currency prices are quoted in (USD, USDT)."),
        C("source", "string", "Source that served the prices (sample, files, yfinance, an exchange id)."),
        C("source_symbol", "string", "The symbol as the source knows it (BTC/USDT, BTC-USD, ^RUT)."),
    ),
    primary_key=("symbol",),
    publish=True,
)

FACT_PRICES = Table(
    "fact_prices",
    "Daily OHLCV bars on each asset's native calendar (crypto: every UTC day; equities: exchange sessions).",
    (
        C("symbol", "string", "Asset key (dim_asset.symbol).", False),
        C("date", "date", "Trading date: the exchange session date, or the UTC candle date for crypto.", False),
        C("open", "float", "Opening price.", unit="quote currency"),
        C("high", "float", "Highest price.", unit="quote currency"),
        C("low", "float", "Lowest price.", unit="quote currency"),
        C("close", "float", "Closing price as traded (not adjusted).", unit="quote currency"),
        C("adj_close", "float", "Close adjusted for splits and dividends; equals close where there is nothing to adjust.", unit="quote currency"),
        C("volume", "float", "Traded volume.", unit="base units"),
        C("source", "string", "Source of the bar.", False),
        C("ingested_at", "timestamp", "When this version of the bar was first stored.", False, unit="UTC"),
    ),
    primary_key=("symbol", "date"),
)

FACT_RETURNS = Table(
    "fact_returns",
    "Daily log returns of the adjusted close on exchange sessions (XNYS by default); "
    "a crypto return on a Monday compounds the weekend. Never forward-filled.",
    (
        C("symbol", "string", "Asset key.", False),
        C("session_date", "date", "Exchange session.", False),
        C("log_return", "float", "ln(adj_close on the session / adj_close on the previous session); null if either is missing.", unit="log return"),
    ),
    primary_key=("symbol", "session_date"),
    publish=True,
    partition_year_by="session_date",
)

MART_ROLLING_CORRELATION = Table(
    "mart_rolling_correlation",
    "Rolling Pearson correlation and beta of each crypto asset (and crypto index) versus each benchmark, "
    "over windows of equity sessions; null unless every session of the window has paired returns.",
    (
        C("date", "date", "Last session of the window.", False),
        C("asset", "string", "Crypto asset or crypto index.", False),
        C("benchmark", "string", "Equity benchmark (^RUT, ^GSPC).", False),
        C("window_days", "int", "Window length in sessions.", False, unit="sessions"),
        C("correlation", "float", "Pearson correlation of daily log returns; null for a partial window or zero variance."),
        C("beta", "float", "cov(asset, benchmark) / var(benchmark) over the window.", unit="ratio"),
        C("observations", "int", "Sessions in the window with returns for both series.", False, unit="sessions"),
    ),
    primary_key=("asset", "benchmark", "window_days", "date"),
    publish=True,
    partition_year_by="date",
)

PIPELINE_RUNS = Table(
    "pipeline_runs",
    "One row per pipeline run, successful or not.",
    (
        C("run_id", "string", "Unique run id.", False),
        C("started_at", "timestamp", "Run start.", False, unit="UTC"),
        C("finished_at", "timestamp", "Run end; null while running.", unit="UTC"),
        C("source", "string", "sample, files or live.", False),
        C("as_of", "date", "Last date the run covers.", False),
        C("status", "string", "running, succeeded or failed.", False),
        C("rows_written", "bigint", "Bars landed in the lake (new or revised).", unit="rows"),
        C("error", "string", "Why the run failed; null otherwise."),
        C("stage_seconds", "string", "JSON object: seconds per stage.", unit="seconds"),
        C("table_rows", "string", "JSON object: rows per published table.", unit="rows"),
        C("audit", "string", "Audit result: passed, or the failed checks."),
        C("code_version", "string", "xasset version and git commit that ran."),
    ),
    primary_key=("run_id",),
)

INGEST_LOG = Table(
    "ingest_log",
    "Every attempt to fetch one symbol in a run, with its outcome.",
    (
        C("run_id", "string", "Run id (pipeline_runs.run_id).", False),
        C("symbol", "string", "Asset key.", False),
        C("source", "string", "Source asked (sample, files, yfinance, an exchange id).", False),
        C("status", "string", "ok, error or skipped.", False),
        C("rows", "bigint", "Bars received.", unit="rows"),
        C("first_date", "date", "First bar date received."),
        C("last_date", "date", "Last bar date received."),
        C("attempts", "int", "Requests made, retries included.", unit="requests"),
        C("error", "string", "Error message for a failed symbol."),
    ),
    primary_key=("run_id", "symbol", "source"),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        DIM_ASSET,
        FACT_PRICES,
        FACT_RETURNS,
        MART_ROLLING_CORRELATION,
        PIPELINE_RUNS,
        INGEST_LOG,
    )
}
