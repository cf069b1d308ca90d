-- Each symbol's first published (not derived) bar, of those dated before $before
-- (flows.rebuild_plan.published_bars_bounded: the bar where the symbol's history starts).
SELECT * FROM main.fact_prices
WHERE source <> 'derived' AND date < $before
  AND (symbol, date) IN (
    SELECT (symbol, min(date)) FROM main.fact_prices
    WHERE source <> 'derived' AND date < $before
    GROUP BY symbol
  )
