"""The GP practice adapter: GP Connect structured records; see docs/adapters/gp-connect.md."""

from adapters.gp_connect.adapter import GpConnectAdapter

__all__ = ["GpConnectAdapter"]
