-- requires: mart_factor_scores
-- Skipped by the build while mart_factor_scores is not in the warehouse.
CREATE VIEW analytics.latest_alpha_scores AS
SELECT
    sector,
    rank() OVER (PARTITION BY sector ORDER BY alpha_score DESC NULLS LAST) AS rank_in_sector,
    symbol,
    alpha_score,
    alpha_label,
    momentum_score,
    value_score,
    quality_score,
    sentiment_score,
    coverage,
    headline,
    date
FROM main.mart_factor_scores
WHERE date = (SELECT max(date) FROM main.mart_factor_scores);
COMMENT ON VIEW analytics.latest_alpha_scores IS 'Alpha Scores on the latest scored date, ranked within each sector.';
COMMENT ON COLUMN analytics.latest_alpha_scores.rank_in_sector IS 'Rank of alpha_score within the sector on this date (1 = highest; ties share a rank).';
