SELECT date, asset, correlation
FROM mart_rolling_correlation
WHERE benchmark = $benchmark
  AND window_days = $window
  AND list_contains($assets, asset)
  AND date <= $as_of
  AND correlation IS NOT NULL
ORDER BY asset, date
