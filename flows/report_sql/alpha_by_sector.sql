-- Alpha Scores of the newest scored session on or before the requested day.
SELECT s.date, s.symbol, coalesce(s.sector, 'Unknown') AS sector, s.alpha_score
FROM mart_factor_scores AS s
WHERE s.date = (SELECT max(date) FROM mart_factor_scores WHERE date <= $as_of)
  AND s.alpha_score IS NOT NULL
ORDER BY sector, symbol
