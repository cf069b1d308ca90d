-- Every row of the attached published file, from the catalog's counts (no scan).
SELECT coalesce(sum(estimated_size), 0) FROM duckdb_tables() WHERE database_name = 'previous'
