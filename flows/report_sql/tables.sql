-- Tables present in the published warehouse (a chart whose table is absent is
-- skipped). Only the main schema: the queries use unqualified names.
SELECT DISTINCT table_name FROM information_schema.tables WHERE table_schema = 'main'
