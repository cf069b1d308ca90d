"""Reading the project's YAML configuration files with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; ``error`` names the file and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"{what} file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} file {path}: expected a mapping at the top level")
    return raw
