"""Running the gateway: configuration from the environment, and the HTTP server.

``vdx gateway run`` calls :func:`config_from_env` and :func:`serve`. The gateway uses the
hub's configuration (``VDX_DATABASE_URL``, ``VDX_AMQP_URL`` for the vhost, ``VDX_TRUST_DIR``
…, see :class:`vdx.registry.admin.HubConfig`) and its own broker account, from
``$VDX_GATEWAY_AMQP_URL`` (several URLs separated by commas for the nodes of a broker
cluster, tried in turn) or the credentials file ``vdx gateway add-system`` wrote.
The key that opens the systems' encrypted secrets is found as :mod:`.keyfile` says
(``VDX_GATEWAY_KEY``, ``VDX_GATEWAY_KEY_FILE``, or the file ``vdx init`` made beside the
hub's key).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from vdx.errors import TransportError
from vdx.registry.admin import HubConfig

from .service import GatewayConfig
from .systems import default_credentials_file


def config_from_env(*, credentials_file: Path | None = None,
                    replay_window: float | None = None) -> GatewayConfig:
    """The gateway's configuration; ``transport.unavailable`` without broker credentials."""
    url = os.environ.get("VDX_GATEWAY_AMQP_URL")
    if not url:
        path = credentials_file or default_credentials_file()
        try:
            url = json.loads(Path(path).read_text())["amqp_url"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TransportError(
                "transport.unavailable",
                f"no broker credentials for the gateway: {path} is missing or unreadable "
                f"({exc.__class__.__name__}); `vdx gateway credentials --reset` writes it, "
                f"or set VDX_GATEWAY_AMQP_URL") from exc
    config = GatewayConfig(HubConfig.from_env(), url)
    if replay_window is not None:
        config = replace(config, replay_window=timedelta(seconds=replay_window))
    return config


def serve(config: GatewayConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's handlers), then drain and stop."""
    import uvicorn

    from vdx.xmldsig.trust import TrustStoreError

    from .app import create_app
    from .service import Gateway

    try:
        gateway = Gateway(config)
    except TrustStoreError as exc:
        raise TransportError("transport.unavailable",
                             f"no usable trust anchors for checking packages ({exc}); set "
                             f"VDX_TRUST_DIR") from exc
    uvicorn.run(create_app(gateway), host=host, port=port, log_level="info", access_log=False)
