-- Each symbol's first published (not derived) bar, of those dated before $before
-- (flows.rebuild_plan.published_bars_bounded: the bar where the symbol's history starts).
-- The row at each symbol's least date in one grouped scan (a symbol's dates are unique: its key),
-- not a join of every bar with the per-symbol minimum (~0.2 against ~0.16 CPU s at 2,100 symbols).
SELECT unnest(arg_min(f, f.date)) FROM main.fact_prices AS f
WHERE f.source <> 'derived' AND f.date < $before
GROUP BY f.symbol
