"""Adapter discovery through the ``exchange.adapters`` entry point group (docs/adapters.md).

An integrator's package declares in its pyproject::

    [project.entry-points."exchange.adapters"]
    my-system = "my_package.adapter:MySystemAdapter"

and ``exchange adapters list`` / ``exchange ingest my-system ...`` find it. A built-in
fallback table names the adapters shipped in this repository so they work before the
package is (re)installed; an installed entry point of the same name wins.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from adapters.base import SourceAdapter

GROUP = "exchange.adapters"

BUILTIN: dict[str, str] = {
    "gp-connect": "adapters.gp_connect:GpConnectAdapter",
    "social-care": "adapters.social_care:SocialCareAdapter",
    "community": "adapters.community:CommunityAdapter",
    "hl7v2": "adapters.hl7v2:Hl7v2Adapter",
}


class UnknownAdapter(LookupError):
    """No adapter of that name is installed or built in."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    target: str  # "module:Class"
    origin: str  # "entry point" | "built-in"
    description: str = ""
    version: str = ""
    error: str | None = None  # why it could not be loaded


def _targets() -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {n: (t, "built-in") for n, t in BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        found[ep.name] = (ep.value, "entry point")
    return found


def _load_class(target: str) -> type[SourceAdapter]:
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, SourceAdapter)):
        raise TypeError(f"{target} is not a SourceAdapter subclass")
    return obj


def available() -> list[AdapterInfo]:
    """Every adapter known, sorted by name, with load errors reported instead of raised."""
    out: list[AdapterInfo] = []
    for name, (target, origin) in sorted(_targets().items()):
        try:
            cls = _load_class(target)
        except Exception as exc:  # an adapter that fails to import must not hide the others
            out.append(AdapterInfo(name, target, origin, error=f"{type(exc).__name__}: {exc}"))
            continue
        out.append(AdapterInfo(name, target, origin, cls.description, str(cls.version)))
    return out


def load(name: str) -> SourceAdapter:
    """An instance of the adapter registered under ``name``."""
    targets = _targets()
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise UnknownAdapter(f"no adapter named {name!r} (known: {known})")
    cls = _load_class(targets[name][0])
    adapter = cls()
    if not adapter.name:
        adapter.name = name
    return adapter
