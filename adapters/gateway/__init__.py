"""The VXP-compatible gateway: agency software built on the public VXP SDK sends and
receives through the hub by changing its endpoint (``VXP_GATEWAY.md``).

- :func:`create_app` / :class:`Gateway` / :class:`GatewayConfig`: the HTTP server
  (``vdx gateway run``) and what each operation does;
- :mod:`.systems`: connected systems, their nodes and signing keys (``vdx gateway …``);
- :class:`SdkService`: builds requests exactly as the Java SDK does (tests, demos).
"""

from __future__ import annotations

from .app import create_app
from .sdk import SdkService, WireRequest
from .service import Gateway, GatewayConfig

__all__ = ["Gateway", "GatewayConfig", "SdkService", "WireRequest", "create_app"]
