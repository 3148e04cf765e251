"""Secret key files beside the hub's signing key: read one safely, create one once.

The gateway's key for systems' secrets (:mod:`vdx_adapters.gateway.keyfile`) and the
console's key for session cookies (:mod:`vdx.console.secret`) are both a line of at least
32 characters in a file only its owner may read, created with mode 0600 and 256 random
bits when none exists. Their modules say where each is looked for; this one says how.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 32


class KeyFileError(Exception):
    """The key file cannot be used; the message names the file and what to do."""


def read_key(path: Path, what: str) -> str | None:
    """The key in ``path``, or ``None`` when there is no such file. A file others may
    read, or one holding less than :data:`MIN_LENGTH` characters, is refused."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {what} {path}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from exc
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); run "
                           f"`chmod 600 {path}`")
    if len(text) < MIN_LENGTH:
        raise KeyFileError(f"{path} holds no key ({MIN_LENGTH} characters or more)")
    return text


def create_key(path: Path, what: str) -> tuple[str, bool]:
    """A new random key written to ``path`` (mode 0600, never over an existing file), and
    ``True``; or, when another process created it meanwhile, that key and ``False``."""
    key = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        found = read_key(path, what)
        if found is None:  # created and removed again meanwhile
            raise KeyFileError(f"{path} appeared and vanished; run the command again"
                               ) from exc
        return found, False
    except OSError as exc:
        raise KeyFileError(f"cannot create {what} at {path}: {exc.strerror}") from exc
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key, True
