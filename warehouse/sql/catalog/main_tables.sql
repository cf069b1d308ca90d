-- Tables already created in the main schema (views skip themselves when a table they need is absent).
SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'
