-- The open database's tags; storage_version names its storage format (e.g. v1.0.0+).
SELECT tags FROM duckdb_databases() WHERE database_name = current_database()
