"""The sources a run can read, by name: each registers its constructor here.

Names come from the one vocabulary (``contracts.vocabulary.SOURCES``); a name
registered that is not in it is an error at import, and a test checks every
name in it has a source. Constructors import their source when called, so
the heavy client libraries of one source (yfinance, ccxt) are loaded only by
a run that reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from contracts.vocabulary import SOURCES
from flows.run import PipelineError
from flows.settings import Settings
from flows.sources.base import Source

Constructor = Callable[[Settings, list[Path] | None], Source]
REGISTRY: dict[str, Constructor] = {}


def register(name: str) -> Callable[[Constructor], Constructor]:
    """Register ``constructor(settings, paths)`` as the source called ``name``."""
    if name not in SOURCES:
        raise ValueError(f"source {name!r} is not in contracts.vocabulary.SOURCES ({', '.join(SOURCES)})")

    def add(constructor: Constructor) -> Constructor:
        if name in REGISTRY:
            raise ValueError(f"source {name!r} is registered twice")
        REGISTRY[name] = constructor
        return constructor

    return add


def make_source(name: str, settings: Settings, paths: list[Path] | None) -> Source:
    if name not in REGISTRY:
        raise PipelineError(f"unknown source {name!r}: choose one of {', '.join(SOURCES)}")
    return REGISTRY[name](settings, paths)


@register("sample")
def sample(settings: Settings, paths: list[Path] | None) -> Source:
    from flows.sources.sample import SampleSource

    return SampleSource(seed=settings.sample_seed, crypto_close=settings.crypto_close)


@register("files")
def files(settings: Settings, paths: list[Path] | None) -> Source:
    from flows.sources.files import FilesSource
    from warehouse.lake import Lake

    return FilesSource(
        paths or [], overlap_rel_tol=settings.files_overlap_rel_tol, on_conflict=settings.files_on_conflict,
        crypto_close=settings.crypto_close, calendar=settings.exchange_calendar,
        lake=Lake(settings.lake_dir, "files"),  # its input cursor: the next run reads only what is new
    )


@register("live")
def live(settings: Settings, paths: list[Path] | None) -> Source:
    try:
        from flows.sources.live import LiveSource
    except ImportError as exc:  # pragma: no cover - until the live source lands
        raise PipelineError("the live source is not available in this build") from exc
    return LiveSource.from_settings(settings)  # crypto_close and the calendar: from the same settings
