-- Per symbol, what the figures a run states on the whole of fact_prices need of its rows before
-- $since (flows.price_figures): first and last date, the last non-derived date, the distinct dates
-- up to $as_of and those on a session (the registered table `sessions`), the newest ingested_at,
-- and the source and adj_close of the last bar. The key (symbol, date) is unique (audited), so
-- count(*) counts distinct dates.
SELECT
    p.symbol,
    min(p.date) FILTER (WHERE p.date <= $as_of) AS first,
    max(p.date) FILTER (WHERE p.date <= $as_of) AS last,
    count(*) FILTER (WHERE p.date <= $as_of) AS _days,
    count(*) FILTER (WHERE p.date <= $as_of AND s.date IS NOT NULL) AS _sessions,
    min(p.date) AS first_bar,
    max(p.date) AS last_bar,
    max(p.date) FILTER (WHERE p.source <> 'derived') AS last_own_bar,
    max(p.ingested_at) AS ingested_at,
    arg_max({'source': p.source, 'adj_close': p.adj_close}, p.date) AS at_last
FROM main.fact_prices AS p
LEFT JOIN sessions AS s ON p.date = s.date
WHERE p.date < $since
GROUP BY p.symbol
