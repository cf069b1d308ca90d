"""An as-of before the published one is refused, unless the operator says --rewind.

A run replaces the published warehouse whole, so a run as of an older date
would silently take that history away from every analyst (issue 19 item 10).
"""

from __future__ import annotations

from datetime import date

import pytest

from flows.nightly import nightly
from reliability_harness import published, run_xasset
from warehouse import snapshots
from warehouse.snapshots import RewindRefused

pytestmark = pytest.mark.usefixtures("prefect_harness")

EARLY, LATE = date(2019, 6, 28), date(2019, 7, 31)


@pytest.fixture()
def data(tmp_path):
    first = nightly(source="sample", as_of=LATE, data_dir=str(tmp_path))
    assert snapshots.published_state(tmp_path)["as_of"] == str(LATE)
    return tmp_path, first.run_id


def test_the_cli_refuses_an_older_as_of_before_prefect_starts(data, prefect_home):
    root, run_id = data
    before = published(root)
    done = run_xasset(prefect_home, "run", "--source", "sample", "--as-of", str(EARLY), "--data-dir", str(root))
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"error: as of {EARLY} is before the published sample run {run_id} as of {LATE}: publishing it would "
        "take that history away from analysts; pass --rewind to do it on purpose (or run a backfill, which "
        "extends history)"
    )
    assert "Traceback" not in done.stderr
    assert published(root) == before
    # Refused before Prefect's start-up: no temporary API was started for it.
    assert "Prefect" not in done.stderr


def test_the_flow_refuses_it_too_and_publishes_nothing(data):
    root, _ = data
    before = published(root)
    with pytest.raises(RewindRefused, match=f"as of {EARLY} is before the published sample run"):
        nightly(source="sample", as_of=EARLY, data_dir=str(root))
    assert published(root) == before


def test_rewind_publishes_the_older_view_on_purpose(data):
    root, run_id = data
    done = nightly(source="sample", as_of=EARLY, data_dir=str(root), rewind=True)
    state = snapshots.published_state(root)
    assert (state["as_of"], state["run_id"]) == (str(EARLY), done.run_id)
    assert done.run_id != run_id


def test_only_an_earlier_date_of_the_same_source_is_a_rewind(tmp_path):
    snapshots.check_no_rewind(tmp_path, "sample", EARLY)  # nothing published yet
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "run.json").write_text('{"source": "sample", "as_of": "2019-07-31", "run_id": "r1"}')
    snapshots.check_no_rewind(tmp_path, "sample", LATE)
    snapshots.check_no_rewind(tmp_path, "sample", date(2019, 8, 1))
    snapshots.check_no_rewind(tmp_path, "files", EARLY)  # another source's warehouse is replaced, as before
    with pytest.raises(RewindRefused, match="published sample run r1 as of 2019-07-31"):
        snapshots.check_no_rewind(tmp_path, "sample", EARLY)
