-- What an analyst can query: contracted tables (main), the curated marts and
-- the analytics views. Internal DuckDB objects are left out.
SELECT schema_name AS schema, table_name AS name, 'table' AS kind, comment AS description
FROM duckdb_tables()
WHERE NOT internal AND database_name = current_database()
UNION ALL
SELECT schema_name, view_name, 'view', comment
FROM duckdb_views()
WHERE NOT internal AND database_name = current_database()
ORDER BY CASE schema WHEN 'main' THEN 0 WHEN 'marts' THEN 1 ELSE 2 END, schema, name
