-- Columns of one table or view, for `xasset describe` on objects without a contract (views).
SELECT column_name AS "column", data_type AS type, is_nullable AS nullable, comment AS description
FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = $schema AND table_name = $name
ORDER BY column_index
