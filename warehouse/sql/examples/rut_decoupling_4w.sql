-- Which crypto assets moved furthest from the Russell 2000 over the last four
-- weeks (90-session correlation), and where do they stand now?
SELECT
    asset,
    date,
    round(correlation, 3) AS corr_90d,
    round(change_1w, 3) AS change_1w,
    round(change_4w, 3) AS change_4w,
    round(beta, 2) AS beta
FROM analytics.latest_correlations
WHERE benchmark = '^RUT' AND window_days = 90
ORDER BY change_4w ASC NULLS LAST
LIMIT 8
