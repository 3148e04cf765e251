"""The key that signs the console's session cookies, and where it is found.

In this order, as the gateway finds its key (:mod:`vdx_adapters.gateway.keyfile`):

1. ``$VDX_CONSOLE_KEY``: the key itself (32 characters or more);
2. ``$VDX_CONSOLE_KEY_FILE``: a file holding it;
3. ``<pki dir>/hub/console-sessions.key``, beside the hub's signing key, created with mode
   0600 and 256 random bits by :func:`ensure_key` (``vdx console run`` and ``add-user``).

Replacing the key ends every open session. Several console processes behind one address
need the same key.
"""

from __future__ import annotations

import os
from pathlib import Path

from vdx import keyfile
from vdx.xmldsig import pki

KEY_FILE_NAME = "console-sessions.key"


class SessionKeyError(Exception):
    """The key cannot be read or written; the message says what to do."""


def key_file(pki_dir: Path) -> Path:
    if named := os.environ.get("VDX_CONSOLE_KEY_FILE"):
        return Path(named).expanduser()
    return pki.CaDir(pki_dir).hub_cert.parent / KEY_FILE_NAME


def load_key(pki_dir: Path) -> str | None:
    """The key, or ``None`` when none is configured yet; a key file others may read, or
    that holds too short a key, is refused."""
    if env := os.environ.get("VDX_CONSOLE_KEY"):
        if len(env) < keyfile.MIN_LENGTH:
            raise SessionKeyError("VDX_CONSOLE_KEY is shorter than 32 characters")
        return env
    try:
        return keyfile.read_key(key_file(pki_dir), "the console's session key")
    except keyfile.KeyFileError as exc:
        raise SessionKeyError(str(exc)) from exc


def ensure_key(pki_dir: Path) -> str:
    """The key, creating the key file (mode 0600) when none is configured."""
    found = load_key(pki_dir)
    if found is not None:
        return found
    try:
        key, _created = keyfile.create_key(key_file(pki_dir), "the console's session key")
    except keyfile.KeyFileError as exc:
        raise SessionKeyError(f"{exc}; set VDX_CONSOLE_KEY_FILE to a writable place") from exc
    return key
