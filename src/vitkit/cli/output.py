"""Shared output conventions: rich for people, one JSON object on the last stdout line for machines."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Human-facing output goes to stderr when --json is given, so stdout stays machine-readable.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def human(json_mode: bool) -> Console:
    return err_console if json_mode else console


def emit_json(obj: dict[str, Any]) -> None:
    """Print one JSON object as the last line of stdout."""
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
