-- The first date of fact_prices before $before (flows.price_figures: where its calendar starts).
SELECT min(date) FROM main.fact_prices WHERE date < $before
