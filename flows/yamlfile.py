"""Reading the project's YAML configuration files with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML has it (the wheels do): the same safe constructors, so the same
# values, about 7x less CPU (a 2,000-symbol universe: ~0.4 CPU-s per read with the pure-Python parser,
# read twice a run). Without libyaml, PyYAML's own parser.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml_mapping(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; ``error`` names the file and what is wrong."""
    try:
        raw = yaml.load(path.read_text(), Loader=_SafeLoader)  # noqa: S506 - a safe loader
    except FileNotFoundError as exc:
        raise error(f"{what} file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} file {path}: expected a mapping at the top level")
    return raw
