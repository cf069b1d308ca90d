SELECT date, mix, nav, drawdown
FROM mart_mix_performance
WHERE date <= $as_of
ORDER BY mix, date
