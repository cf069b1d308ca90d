-- Correlation regime events against the Russell 2000 in the last 30 days.
SELECT date, asset, window_days, event, round(correlation, 3) AS correlation, previous_date
FROM analytics.recent_correlation_events
WHERE benchmark = '^RUT'
ORDER BY date DESC, asset, window_days
LIMIT 10
