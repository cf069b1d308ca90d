SELECT date, close, ath_close, ath_since, is_new_ath, drawdown_from_ath
FROM mart_market_milestones
WHERE symbol = $symbol AND date <= $as_of
ORDER BY date
