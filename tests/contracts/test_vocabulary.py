"""The shared vocabulary is what the CLI, the settings and the docs use, not a parallel list."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.vocabulary import ASSET_CLASSES, CRYPTO_CLASSES, DEFAULT_JUMP_BOUNDS, DEFAULT_STABLECOINS, SOURCES

REPO = Path(__file__).resolve().parents[2]


def test_every_asset_class_has_a_default_jump_bound_and_the_groups_are_classes():
    assert set(DEFAULT_JUMP_BOUNDS) == set(ASSET_CLASSES)
    assert set(CRYPTO_CLASSES) <= set(ASSET_CLASSES)


def test_the_cli_offers_exactly_the_sources():
    from flows.cli import Source

    assert tuple(s.value for s in Source) == SOURCES


def test_docs_list_the_default_stablecoins():
    text = (REPO / "docs/analytics.md").read_text()
    listed = re.search(r"default stablecoins that are left out: ([A-Z, \n]+)\.", text)
    assert listed, "docs/analytics.md no longer lists the default stablecoins"
    assert tuple(c.strip() for c in listed.group(1).replace("\n", " ").split(",")) == DEFAULT_STABLECOINS
    assert len(set(DEFAULT_STABLECOINS)) == len(DEFAULT_STABLECOINS)
