-- Tables present in the published warehouse (a chart whose table is absent is skipped).
SELECT DISTINCT table_name FROM information_schema.tables
