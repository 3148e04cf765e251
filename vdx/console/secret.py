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
import secrets
from pathlib import Path

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
        if len(env) < 32:
            raise SessionKeyError("VDX_CONSOLE_KEY is shorter than 32 characters")
        return env
    path = key_file(pki_dir)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionKeyError(f"cannot read the console's session key {path}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from exc
    if mode & 0o077:
        raise SessionKeyError(f"{path} is readable by others (mode {mode & 0o777:o}); run "
                        f"`chmod 600 {path}`")
    if len(text) < 32:
        raise SessionKeyError(f"{path} holds no key (32 characters or more)")
    return text


def ensure_key(pki_dir: Path) -> str:
    """The key, creating the key file (mode 0600) when none is configured."""
    found = load_key(pki_dir)
    if found is not None:
        return found
    path = key_file(pki_dir)
    key = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created meanwhile by another process
        return load_key(pki_dir) or key
    except OSError as exc:
        raise SessionKeyError(f"cannot create the console's session key at {path}: "
                        f"{exc.strerror}; set VDX_CONSOLE_KEY_FILE to a writable place"
                        ) from exc
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key
