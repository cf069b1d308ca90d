-- The headline: one asset's correlation with the benchmark on the report day,
-- and its change against the last reading on or before 7 and 28 calendar days
-- earlier (ASOF, as analytics.latest_correlations measures it).
WITH readings AS (
    SELECT date, correlation
    FROM mart_rolling_correlation
    WHERE asset = $asset AND benchmark = $benchmark AND window_days = $window
      AND correlation IS NOT NULL AND date <= $as_of
),
today AS (
    SELECT date, correlation, date - 7 AS day_1w, date - 28 AS day_4w
    FROM readings
    ORDER BY date DESC
    LIMIT 1
)
SELECT
    t.date,
    t.correlation,
    t.correlation - w1.correlation AS change_1w,
    w1.date AS date_1w,
    t.correlation - w4.correlation AS change_4w,
    w4.date AS date_4w
FROM today AS t
ASOF LEFT JOIN readings AS w1 ON w1.date <= t.day_1w
ASOF LEFT JOIN readings AS w4 ON w4.date <= t.day_4w
