"""The key that encrypts connected systems' secrets at rest, and where it is found.

The gateway must store each system's secret (it checks an HMAC keyed with it), so the
database holds it encrypted (Fernet, ``tables.seal_secret``) with this key, found by
:func:`load_key` in this order, the same for ``vdx gateway run``, the ``vdx gateway``
commands and migration 0008:

1. ``$VDX_GATEWAY_KEY``: the key itself (a long random string), for deployments that
   inject secrets through the environment;
2. ``$VDX_GATEWAY_KEY_FILE``: a file holding it;
3. ``<pki dir>/hub/gateway-secrets.key``, beside the hub's signing key (``hub/hub.key``),
   which ``vdx init`` creates with mode 0600 when neither of the above is set
   (:func:`ensure_key`). The pki dir is ``$VDX_PKI_DIR`` (default ``$VDX_HOME/pki``).

The gateway host needs the same key as the host where systems are added: copy the file
(mode 0600) or set ``VDX_GATEWAY_KEY_FILE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vdx import keyfile
from vdx.errors import GatewayError
from vdx.xmldsig import pki

KEY_FILE_NAME = "gateway-secrets.key"


@dataclass(frozen=True)
class GatewayKey:
    """The key, and where it came from (``created``: just written by :func:`ensure_key`)."""

    key: str
    source: str  # "VDX_GATEWAY_KEY" or a file's path
    created: bool = False


def default_pki_dir() -> Path:
    """The hub's PKI directory as ``vdx`` commands find it (``HubConfig.from_env``)."""
    from vdx.registry.admin import HubConfig

    return HubConfig.from_env().pki_dir


def key_file(pki_dir: Path | None = None) -> Path:
    """``$VDX_GATEWAY_KEY_FILE``, or ``gateway-secrets.key`` beside the hub's key."""
    if named := os.environ.get("VDX_GATEWAY_KEY_FILE"):
        return Path(named).expanduser()
    return pki.CaDir(pki_dir or default_pki_dir()).hub_cert.parent / KEY_FILE_NAME


def load_key(pki_dir: Path | None = None) -> GatewayKey | None:
    """The key (the module docstring's order), or ``None`` when none is configured yet.

    A key file others may read, or that is empty, is refused (``gateway.bad_key``)."""
    if env := os.environ.get("VDX_GATEWAY_KEY"):
        return GatewayKey(env, "VDX_GATEWAY_KEY")
    path = key_file(pki_dir)
    try:
        text = keyfile.read_key(path, "the gateway's key")
    except keyfile.KeyFileError as exc:
        raise GatewayError("gateway.bad_key", str(exc)) from exc
    return None if text is None else GatewayKey(text, str(path))


def ensure_key(pki_dir: Path | None = None) -> GatewayKey:
    """The key, creating the key file (mode 0600, 256 random bits) when none is configured.

    Raises ``gateway.bad_key`` when the file cannot be written, naming what to do."""
    found = load_key(pki_dir)
    if found is not None:
        return found
    path = key_file(pki_dir)
    try:
        key, created = keyfile.create_key(path, "the key that encrypts gateway systems' "
                                                "secrets")
    except keyfile.KeyFileError as exc:
        raise GatewayError("gateway.bad_key",
                           f"{exc}; set VDX_GATEWAY_KEY_FILE to a writable place (or "
                           f"VDX_PKI_DIR), then run the command again") from exc
    return GatewayKey(key, str(path), created=created)


def require_key(pki_dir: Path | None = None) -> str:
    """The key; ``gateway.bad_key`` naming where it was looked for when there is none."""
    found = load_key(pki_dir)
    if found is None:
        raise GatewayError("gateway.bad_key",
                           f"no key for the gateway systems' secrets: not in VDX_GATEWAY_KEY "
                           f"and no file {key_file(pki_dir)}; `vdx init` creates it where "
                           f"systems are added, copy it here (mode 0600) or set "
                           f"VDX_GATEWAY_KEY_FILE")
    return found.key
