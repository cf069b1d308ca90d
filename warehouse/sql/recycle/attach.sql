-- The published run's file beside the one being written, read-only: the rows the recycled
-- file lacks are read from it ({path}: a quoted literal; ATTACH takes no parameters).
ATTACH {path} AS previous (READ_ONLY)
