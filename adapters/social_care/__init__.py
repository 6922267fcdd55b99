"""Adult social care adapter (``social-care``): see :mod:`adapters.social_care.adapter`."""

from adapters.social_care.adapter import SocialCareAdapter

__all__ = ["SocialCareAdapter"]
