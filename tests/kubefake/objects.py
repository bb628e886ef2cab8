"""Small helpers for the API objects the fake keeps: JSON copies and timestamps written the
way the API server writes them (RFC 3339, seconds, UTC)."""

from __future__ import annotations

import datetime
import json
from typing import Any


def clone(value: Any) -> Any:
    """A deep copy of JSON data (several times faster than copy.deepcopy)."""
    return json.loads(json.dumps(value))


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
