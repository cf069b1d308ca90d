-- The two best Alpha Scores in each sector on the latest scored session.
SELECT sector, rank_in_sector AS rank, symbol, alpha_score, alpha_label, coverage, date
FROM analytics.latest_alpha_scores
WHERE rank_in_sector <= 2
ORDER BY sector, rank_in_sector, symbol
