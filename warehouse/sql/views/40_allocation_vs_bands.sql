-- requires: mart_allocation_weights
-- Bands apply to a sleeve, not to a member: weights are summed per sleeve and
-- the distance outside the band is signed (negative: under the band).
CREATE VIEW analytics.allocation_vs_bands AS
WITH latest AS (
    SELECT mix, max(date) AS date
    FROM main.mart_allocation_weights
    GROUP BY mix
),
sleeves AS (
    SELECT
        w.mix,
        w.date,
        w.sleeve,
        sum(w.target_weight) AS target_weight,
        sum(w.weight) AS weight,
        any_value(w.band_min) AS band_min,
        any_value(w.band_max) AS band_max,
        -- The mart's own verdict, so this view and mart_band_breaches never disagree.
        bool_and(w.in_band) AS in_band,
        string_agg(w.symbol, ', ' ORDER BY w.weight DESC) AS members
    FROM main.mart_allocation_weights AS w
    JOIN latest USING (mix, date)
    GROUP BY ALL
)
SELECT
    *,
    CASE
        WHEN weight < band_min THEN weight - band_min
        WHEN weight > band_max THEN weight - band_max
        ELSE 0.0
    END AS outside_band_by
FROM sleeves;
COMMENT ON VIEW analytics.allocation_vs_bands IS 'Current weight of each sleeve of each allocation mix against its policy band.';
COMMENT ON COLUMN analytics.allocation_vs_bands.date IS 'Latest date of this mix in mart_allocation_weights.';
COMMENT ON COLUMN analytics.allocation_vs_bands.target_weight IS 'Sum of the sleeve members'' target weights.';
COMMENT ON COLUMN analytics.allocation_vs_bands.weight IS 'Sum of the sleeve members'' drifted weights on date.';
COMMENT ON COLUMN analytics.allocation_vs_bands.in_band IS 'Whether every member of the sleeve is within the band (the mart''s own verdict).';
COMMENT ON COLUMN analytics.allocation_vs_bands.members IS 'The sleeve''s symbols, heaviest first.';
COMMENT ON COLUMN analytics.allocation_vs_bands.outside_band_by IS 'weight minus the nearest band edge when outside the band (negative: under it); 0 inside.';
