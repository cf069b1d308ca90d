-- The newest correlation date on or before the requested day.
SELECT max(date) AS as_of FROM mart_rolling_correlation WHERE date <= $as_of
