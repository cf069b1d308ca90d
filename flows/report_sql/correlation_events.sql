-- Regime events only: a sign or level state that had held for at least
-- $min_sessions sessions (or is a first on record), not day-to-day flicker.
SELECT date, asset, event, correlation, level, description
FROM mart_correlation_events
WHERE benchmark = $benchmark
  AND window_days = $window
  AND asset = $asset
  AND date <= $as_of
  AND (sessions_since IS NULL OR sessions_since >= $min_sessions)
ORDER BY date
