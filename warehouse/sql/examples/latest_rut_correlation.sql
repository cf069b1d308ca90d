-- Latest 90-session correlation of each crypto asset with the Russell 2000,
-- with the reading one month (21 sessions) earlier.
WITH ranked AS (
    SELECT
        asset,
        date,
        correlation,
        beta,
        lag(correlation, 21) OVER (PARTITION BY asset ORDER BY date) AS correlation_1m_ago
    FROM mart_rolling_correlation
    WHERE benchmark = '^RUT' AND window_days = 90
    QUALIFY row_number() OVER (PARTITION BY asset ORDER BY date DESC) = 1
)
SELECT
    r.asset,
    a.name,
    r.date AS as_of,
    round(r.correlation, 3) AS corr_90d,
    round(r.correlation_1m_ago, 3) AS corr_90d_1m_ago,
    round(r.beta, 2) AS beta_90d
FROM ranked AS r
JOIN dim_asset AS a ON a.symbol = r.asset
ORDER BY r.correlation DESC NULLS LAST
