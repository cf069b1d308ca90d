-- When the Russell 2000 rallies, do altcoins follow? Over the latest
-- 365-session window: each crypto asset's correlation and beta with ^RUT on
-- its rally sessions (return above +1 sd), on its sell-offs (below -1 sd) and
-- on all sessions, the next-session follow-through (^RUT today vs the asset
-- tomorrow), and, for the series of the spillover index (BTC, ETH, ALTS),
-- the share of their forecast-error variance due to the others' shocks.
WITH latest AS (
    SELECT max(date) AS d FROM mart_spillover
),
regimes AS (
    SELECT
        asset,
        max(correlation) FILTER (WHERE regime = 'risk_on') AS corr_rally,
        max(correlation) FILTER (WHERE regime = 'risk_off') AS corr_selloff,
        max(correlation) FILTER (WHERE regime = 'all') AS corr_all,
        max(beta) FILTER (WHERE regime = 'risk_on') AS beta_rally,
        max(observations) FILTER (WHERE regime = 'risk_on') AS rally_days
    FROM mart_spillover, latest
    WHERE date = latest.d AND benchmark = '^RUT' AND window_days = 365
    GROUP BY asset
),
follow AS (
    SELECT asset, correlation AS corr_next_day
    FROM mart_lead_lag, latest
    WHERE date = latest.d AND benchmark = '^RUT' AND window_days = 365
      AND measure = 'session' AND lag_sessions = 1
),
spill_in AS (
    SELECT series AS asset, from_others
    FROM mart_spillover_index
    WHERE date = (SELECT max(date) FROM mart_spillover_index)
)
SELECT
    r.asset,
    round(r.corr_rally, 3) AS corr_rally,
    round(r.corr_selloff, 3) AS corr_selloff,
    round(r.corr_all, 3) AS corr_all,
    round(r.beta_rally, 2) AS beta_rally,
    r.rally_days,
    round(f.corr_next_day, 3) AS corr_next_day,
    round(i.from_others, 1) AS spill_in_pct
FROM regimes AS r
LEFT JOIN follow AS f USING (asset)
LEFT JOIN spill_in AS i USING (asset)
ORDER BY r.corr_rally DESC NULLS LAST
