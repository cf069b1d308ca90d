-- requires: mart_band_compliance
-- Every day of every sleeve of every mix against its band: the compliance
-- record behind today's analytics.allocation_vs_bands. The figures are
-- computed once, in Polars (transforms.allocation.band_compliance), and
-- contracted in mart_band_compliance; this view is the analysts' name for it,
-- with the distance outside the band signed the way allocation_vs_bands signs it.
CREATE VIEW analytics.allocation_vs_bands_history AS
SELECT
    mix,
    sleeve,
    date,
    weight,
    band_min,
    band_max,
    in_band,
    target_weight,
    drift,
    days_out_of_band,
    trade_to_band,
    -trade_to_band AS outside_band_by
FROM main.mart_band_compliance;
COMMENT ON VIEW analytics.allocation_vs_bands_history IS 'Daily band compliance of each sleeve of each allocation mix: in or out of band, drift from target, consecutive days out, and the smallest trade back into the band.';
COMMENT ON COLUMN analytics.allocation_vs_bands_history.outside_band_by IS 'weight minus the nearest band edge when outside the band (negative: under it); 0 inside. Equals -trade_to_band, as in allocation_vs_bands.';
