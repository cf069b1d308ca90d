-- The newest matrix on or before the requested day for one window.
SELECT asset_a, asset_b, correlation, date
FROM mart_correlation_matrix
WHERE window_days = $window
  AND date = (SELECT max(date) FROM mart_correlation_matrix WHERE window_days = $window AND date <= $as_of)
ORDER BY asset_a, asset_b
