-- The first date of fact_prices' bars dated before $before, or NULL; with $own_only, of the
-- published (not derived) bars only. Own only: flows.rebuild_plan.published_first_date (where
-- the calendar of the run's screen starts). Every bar: warehouse.price_history.EarlierPrices
-- (flows.price_figures: its calendar starts where fact_prices does, derived bars included).
SELECT min(date) AS first FROM main.fact_prices WHERE date < $before AND (NOT $own_only OR source <> 'derived')
