-- The first date of fact_prices before $since and up to $as_of (flows.price_figures: where its calendar starts).
SELECT min(date) FROM main.fact_prices WHERE date < $since AND date <= $as_of
