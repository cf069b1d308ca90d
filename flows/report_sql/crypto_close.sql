-- When the published run's crypto daily bars close (pipeline_runs.crypto_close):
-- the newest succeeded run that recorded it.
SELECT crypto_close FROM pipeline_runs
WHERE status = 'succeeded' AND crypto_close IS NOT NULL
ORDER BY started_at DESC
LIMIT 1
