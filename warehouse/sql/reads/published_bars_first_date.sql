-- The first date of the published (not derived) bars dated before $before, or NULL
-- (flows.rebuild_plan.published_bars_bounded: where the run's calendar starts).
SELECT min(date) AS first FROM main.fact_prices WHERE source <> 'derived' AND date < $before
