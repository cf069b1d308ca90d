-- The latest regime event of one pair: a sign or level state that had held for
-- at least $min_sessions sessions (or a first on record), on or before the day.
SELECT date, event, level, correlation, previous_date, sessions_since
FROM mart_correlation_events
WHERE asset = $asset AND benchmark = $benchmark AND window_days = $window
  AND date <= $as_of
  AND (sessions_since IS NULL OR sessions_since >= $min_sessions)
ORDER BY date DESC
LIMIT 1
