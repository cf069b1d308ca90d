"""Every source name in the vocabulary has a registered source, and only those."""

from __future__ import annotations

import pytest

from contracts.vocabulary import SOURCES
from flows.run import PipelineError
from flows.settings import Settings
from flows.sources.registry import REGISTRY, make_source, register


def test_every_name_in_sources_has_a_registered_source():
    assert set(REGISTRY) == set(SOURCES)


@pytest.mark.parametrize("name", ["sample", "files"])
def test_a_registered_constructor_builds_its_source(name, tmp_path):
    assert make_source(name, Settings(), [tmp_path]).name == name


def test_an_unknown_name_is_refused_naming_the_choices():
    with pytest.raises(PipelineError, match=r"unknown source 'yahoo': choose one of sample, files, live"):
        make_source("yahoo", Settings(), None)
    with pytest.raises(ValueError, match="not in contracts.vocabulary.SOURCES"):
        register("yahoo")
