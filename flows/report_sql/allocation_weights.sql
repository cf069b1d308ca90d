-- Drifted weight of each sleeve of one mix per day, with its policy band.
SELECT date, sleeve, sum(weight) AS weight, min(band_min) AS band_min, max(band_max) AS band_max
FROM mart_allocation_weights
WHERE mix = $mix AND date <= $as_of
GROUP BY date, sleeve
ORDER BY sleeve, date
