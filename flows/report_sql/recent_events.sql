SELECT date, asset, benchmark, window_days, event, description
FROM mart_correlation_events
WHERE date <= $as_of AND date > $as_of - INTERVAL 30 DAY
ORDER BY date DESC, asset, benchmark, window_days
LIMIT 20
