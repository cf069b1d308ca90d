-- Tables stay in `main` so unqualified queries (SELECT * FROM mart_rolling_correlation)
-- keep working; `marts` is the curated namespace of what BI tools also get as
-- Parquet (views generated from the contracts), `analytics` answers common questions.
CREATE SCHEMA IF NOT EXISTS marts;
CREATE SCHEMA IF NOT EXISTS analytics;
