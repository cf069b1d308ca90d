"""A corrupt file of the data directory's own state (issue 19 item 9): a lake Parquet file or the run
log. The run fails with one line naming the file (Polars' own message named none), publishes nothing,
and leaves the file as it found it, for the operator to restore or move away.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from flows.nightly import nightly
from reliability_harness import published
from warehouse.files import StoredFileError

pytestmark = pytest.mark.usefixtures("prefect_harness")

START, D1, D2 = date(2019, 1, 2), date(2019, 6, 28), date(2019, 7, 31)
NOT_PARQUET = "parquet: File out of specification: The file must end with PAR1 or PARE"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = tmp_path_factory.mktemp("corrupt-state")
    assert nightly(source="sample", start=START, as_of=D1, data_dir=str(data)).status == "succeeded"
    return data


SPOILED = b"PAR1" + b"\x00" * 64


@pytest.mark.parametrize("which", ["lake", "run log"])
def test_a_corrupt_state_file_fails_the_run_naming_it_and_publishes_nothing(data, which):
    before = published(data)
    if which == "lake":
        path = sorted((data / "lake" / "bars").rglob("2019.parquet"))[0]
    else:
        path = data / "state" / "pipeline_runs.parquet"
    good = path.read_bytes()
    path.write_bytes(SPOILED)
    try:
        with pytest.raises(StoredFileError) as err:
            nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
        assert str(err.value) == f"cannot read {path}: {NOT_PARQUET}"
        assert published(data) == before
        assert path.read_bytes() == SPOILED, "left as found: never overwritten, the run log never started afresh"
        if which == "lake":  # the run log is readable, so the failed run is recorded with the same line
            runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet").sort("started_at")
            assert runs["status"][-1] == "failed" and runs["error"][-1] == str(err.value)
    finally:
        path.write_bytes(good)
