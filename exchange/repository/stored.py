"""A stored resource version as it leaves the database: bytes first, dict on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson


@dataclass
class StoredResource:
    rid: int
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: bytes | None  # canonical JSON exactly as served; None for a delete version
    method: str = "PUT"
    _data: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> dict[str, Any]:
        """The parsed resource (parsed once, lazily; orjson is ~100x cheaper than models)."""
        if self._data is None:
            self._data = orjson.loads(self.content) if self.content else {}
        return self._data

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"
