-- Today's sleeve weights of each policy mix against its bands (reference mixes
-- have no policy band and are left out).
SELECT
    mix,
    sleeve,
    round(target_weight, 3) AS target,
    round(weight, 3) AS weight,
    band_min,
    band_max,
    in_band,
    members
FROM analytics.allocation_vs_bands
WHERE sleeve <> 'reference'
ORDER BY mix, sleeve
