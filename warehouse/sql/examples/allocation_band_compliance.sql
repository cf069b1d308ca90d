-- How each policy mix kept to its bands: share of days out of band, the
-- longest spell out, and the largest trade that was needed to get back in.
SELECT
    mix,
    sleeve,
    round(avg(CASE WHEN in_band THEN 0 ELSE 1 END), 3) AS share_days_out,
    max(days_out_of_band) AS longest_spell_days,
    round(max(abs(trade_to_band)), 3) AS largest_trade_to_band,
    round(max(weight), 3) AS max_weight,
    any_value(band_max) AS band_max
FROM analytics.allocation_vs_bands_history
WHERE sleeve <> 'reference'
GROUP BY mix, sleeve
ORDER BY mix, sleeve
