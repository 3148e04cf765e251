"""Running the console: its configuration from the environment, and the HTTP server.

``vdx console run`` calls :func:`config_from_env` and :func:`serve`. The console reads
the hub's configuration (``VDX_DATABASE_URL``, ``VDX_AMQP_URL``, ``VDX_PKI_DIR`` …, see
:class:`vdx.registry.admin.HubConfig`), the session key of :mod:`.secret`, and
``VDX_CONSOLE_SECURE_COOKIES=1`` when it is served over HTTPS (a TLS proxy in front).
"""

from __future__ import annotations

import os

from vdx.console.app import ConsoleConfig
from vdx.console.secret import ensure_key
from vdx.registry.admin import HubConfig


def config_from_env(*, secure_cookies: bool | None = None) -> ConsoleConfig:
    hub = HubConfig.from_env()
    if secure_cookies is None:
        secure_cookies = os.environ.get("VDX_CONSOLE_SECURE_COOKIES", "") in ("1", "true")
    return ConsoleConfig(hub, ensure_key(hub.pki_dir), secure_cookies=secure_cookies)


def serve(config: ConsoleConfig, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's handlers)."""
    import uvicorn

    from vdx.console.app import create_app

    uvicorn.run(create_app(config), host=host, port=port, log_level="info",
                access_log=False, proxy_headers=True)
