-- Session log returns of the heatmap's symbols up to the report day (the
-- report computes that day's matrix when the mart has none for it).
SELECT symbol, session_date, log_return
FROM fact_returns
WHERE list_contains($symbols, symbol) AND session_date <= $as_of
ORDER BY session_date, symbol
