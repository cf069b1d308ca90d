-- The bars of fact_prices before $since (symbol, date, adj_close) of the symbols in the registered
-- table `wanted` (flows.price_figures), or of every symbol when $every.
SELECT symbol, date, adj_close
FROM main.fact_prices
WHERE date < $since AND ($every OR symbol IN (SELECT symbol FROM wanted))
