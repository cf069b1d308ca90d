-- Everything a full build declares besides the rows: schemas, tables and their columns (types,
-- nullability, order), constraints, comments and view definitions. An incremental load may copy the
-- published file only while this equals a fresh build's (warehouse.build.load_database).
SELECT 'schema' AS kind, schema_name AS schema, '' AS name, 0 AS position, comment AS detail, '' AS extra
FROM duckdb_schemas() WHERE database_name = current_database() AND NOT internal
UNION ALL
SELECT 'table', schema_name, table_name, 0, comment, ''
FROM duckdb_tables() WHERE database_name = current_database() AND NOT internal
UNION ALL
SELECT 'column', schema_name, table_name || '.' || column_name, column_index,
       data_type || CASE WHEN is_nullable THEN '' ELSE ' NOT NULL' END || coalesce(' DEFAULT ' || column_default, ''),
       comment
FROM duckdb_columns() WHERE database_name = current_database() AND NOT internal
UNION ALL
SELECT 'constraint', schema_name, table_name, 0, constraint_type, constraint_text
FROM duckdb_constraints() WHERE database_name = current_database()
UNION ALL
SELECT 'view', schema_name, view_name, 0, sql, comment
FROM duckdb_views() WHERE database_name = current_database() AND NOT internal
UNION ALL
SELECT 'index', schema_name, index_name, 0, sql, comment
FROM duckdb_indexes() WHERE database_name = current_database()
ORDER BY kind, schema, name, position, detail, extra
