-- requires: mart_correlation_events mart_rolling_correlation
-- "Recent" is relative to the warehouse's latest session, not today's clock:
-- a warehouse built for an earlier as_of still answers the question it was built for.
CREATE VIEW analytics.recent_correlation_events AS
SELECT
    e.date,
    e.asset,
    e.benchmark,
    e.window_days,
    e.event,
    e.level,
    e.correlation,
    e.previous_date,
    e.sessions_since,
    e.description
FROM main.mart_correlation_events AS e
WHERE e.date > (SELECT max(date) FROM main.mart_rolling_correlation) - 30;
COMMENT ON VIEW analytics.recent_correlation_events IS 'Correlation events of the last 30 days before the latest session.';
