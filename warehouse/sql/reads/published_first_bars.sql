-- Each symbol's first published (not derived) bar, of those dated before $before
-- (flows.rebuild_plan.published_bars_bounded: the bar where the symbol's history starts).
SELECT f.* FROM main.fact_prices AS f
JOIN (
    SELECT symbol, min(date) AS first FROM main.fact_prices
    WHERE source <> 'derived' AND date < $before
    GROUP BY symbol
) AS m ON f.symbol = m.symbol AND f.date = m.first
WHERE f.source <> 'derived'
