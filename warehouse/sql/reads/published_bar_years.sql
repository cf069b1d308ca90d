-- Per symbol and year, the published (not derived) bars dated before $before: their newest
-- ingested_at (flows.rebuild_plan.published_bars_bounded: what the bars a bounded read leaves out
-- tell the run state and the lake-file check).
SELECT symbol, CAST(year(date) AS INTEGER) AS year, max(ingested_at) AS ingested_through
FROM main.fact_prices
WHERE source <> 'derived' AND date < $before
GROUP BY ALL
