-- requires: mart_rolling_correlation
-- Changes are measured against the last reading on or before 7 and 28 calendar
-- days earlier (ASOF), not N rows back: holidays and gaps do not shift the
-- comparison date, and a pair with a short history gets null, not a wrong delta.
CREATE VIEW analytics.latest_correlations AS
WITH latest AS (
    SELECT asset, benchmark, window_days, max(date) AS date
    FROM main.mart_rolling_correlation
    WHERE correlation IS NOT NULL
    GROUP BY ALL
),
readings AS (
    SELECT asset, benchmark, window_days, date, correlation
    FROM main.mart_rolling_correlation
    WHERE correlation IS NOT NULL
)
SELECT
    l.asset,
    l.benchmark,
    l.window_days,
    l.date,
    c.correlation,
    c.beta,
    c.correlation - w1.correlation AS change_1w,
    c.correlation - w4.correlation AS change_4w,
    w1.date AS date_1w,
    w4.date AS date_4w
FROM latest AS l
JOIN main.mart_rolling_correlation AS c USING (asset, benchmark, window_days, date)
ASOF LEFT JOIN readings AS w1
    ON w1.asset = l.asset AND w1.benchmark = l.benchmark AND w1.window_days = l.window_days
    AND w1.date <= l.date - 7
ASOF LEFT JOIN readings AS w4
    ON w4.asset = l.asset AND w4.benchmark = l.benchmark AND w4.window_days = l.window_days
    AND w4.date <= l.date - 28;
COMMENT ON VIEW analytics.latest_correlations IS 'Latest rolling correlation per asset, benchmark and window, with its change over 1 and 4 weeks.';
COMMENT ON COLUMN analytics.latest_correlations.date IS 'Latest session with a correlation for this asset, benchmark and window.';
COMMENT ON COLUMN analytics.latest_correlations.change_1w IS 'correlation minus the reading on date_1w (null when the history is shorter).';
COMMENT ON COLUMN analytics.latest_correlations.change_4w IS 'correlation minus the reading on date_4w (null when the history is shorter).';
COMMENT ON COLUMN analytics.latest_correlations.date_1w IS 'Date of the last reading on or before date - 7 days, which change_1w compares with.';
COMMENT ON COLUMN analytics.latest_correlations.date_4w IS 'Date of the last reading on or before date - 28 days, which change_4w compares with.';
