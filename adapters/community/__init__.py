"""Community services adapter (``community``): see :mod:`adapters.community.adapter`."""

from adapters.community.adapter import CommunityAdapter

__all__ = ["CommunityAdapter"]
