"""The stages of a run, in the order the nightly flow (``flows.nightly``) runs them.

``extract``: fetch every symbol from the source in batches and land them in
the lake; ``transform``: screen the lake and build every mart (in full, or
from the rebuild plan's date, ``flows.rebuild_plan``); ``publish``: load the
staged warehouse, audit the complete run, stage the marts and switch the
published run, then mirror it.
"""
