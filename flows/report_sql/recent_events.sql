-- The report words each event itself (flows/report.py, event_sentence): the
-- mart's description rounds the figure to two decimals, which can land on the
-- level crossed ("fell below 0.50 (0.50)").
SELECT date, asset, benchmark, window_days, event, level, correlation, previous_date, sessions_since
FROM mart_correlation_events
WHERE date <= $as_of AND date > $as_of - INTERVAL 30 DAY
ORDER BY date DESC, asset, benchmark, window_days
LIMIT 20
