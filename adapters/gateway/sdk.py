"""A VXP SDK twin: builds requests exactly as the public VXP Java SDK (SDKVXP 2.0.1) does.

Used by the tests (byte for byte against vectors made with the SDK's own Java classes,
``tests/adapters/vxp_sdk``) and by anyone who wants to drive the gateway from Python the way
agency software does. Building is pure (:meth:`SdkService.build` returns a
:class:`WireRequest`); :func:`send` is a thin :mod:`urllib` sender.

What the SDK does, and this twin with it:

- one *service object* (``KnobstickServiceImp``) holds a header map whose ``timestamp``
  is written once, when the object is created, and which keeps every parameter of every
  call made through it;
- the map is a ``java.util.HashMap``: headers come out in its bucket order, not in
  insertion order (:func:`java_hashmap_order`);
- ``sign-header`` is Gson's ``JsonObject.toString()`` of those headers
  (:func:`gson_object`), ``hash-header`` its HMAC-SHA256 in lower-case hex;
- ``sendEdoc`` adds ``hash-file`` (:func:`~adapters.gateway.auth.sdk_hash_file`, no zero
  padding) and writes the file followed by ``\\r\\n`` as the body; ``getEdoc``,
  ``updateStatus``, the counts and ``deleteAgency`` send ``{}``; the lists send nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from vdx.core.model import VIETNAM_TZ

from .auth import PREFIX, SDK_USER_AGENT, SDK_VERSION, format_timestamp, sdk_hash_file

JSON = "application/json"
OCTETS = "application/octet-stream"
# How each operation's body goes out (see the module docstring).
_EMPTY_JSON = {"getEdoc", "updateStatus", "countReceiveEdoc", "countReceiveStatus",
               "deleteAgency"}


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request as it leaves the SDK: method, operation, headers in order, body."""

    method: str
    operation: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class SdkService:
    """One SDK service object for ``system_id`` (see the module docstring).

    ``created`` is when the object was made: its timestamp, in ``zone`` (the JVM's time
    zone; Vietnam time on agency servers).
    """

    system_id: str
    secret: str = field(repr=False)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    zone: tzinfo = VIETNAM_TZ
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.headers:
            self.headers["timestamp"] = format_timestamp(self.created, self.zone)
            self.headers["systemid"] = self.system_id

    def build(self, operation: str, params: dict[str, str] | None = None, *,
              file: bytes | None = None, body: bytes | None = None,
              method: str = "POST") -> WireRequest:
        """The request for ``operation`` with ``params`` (the SDK's ``jsonHeaders``).

        ``file`` is the package for ``sendEdoc``; ``body`` overrides the body (a JSON
        document for ``registerAgency``).
        """
        self.headers["Content-Type"] = OCTETS if file is not None else JSON
        for name, value in (params or {}).items():
            self.headers[name] = value
        if file is not None:
            self.headers["hash-file"] = sdk_hash_file(file)
        wire: list[tuple[str, str]] = []
        signed: list[tuple[str, str]] = []
        names: list[str] = []
        for name in java_hashmap_order(list(self.headers)):
            value = self.headers[name]
            if name == "Content-Type":
                wire.append((name, value))
            signed.append((PREFIX + name, value))
            wire.append((PREFIX + name, value))
            names.append(name)
        sign_header = gson_object(signed)
        digest = hmac.new(self.secret.encode("utf-8"), sign_header.encode("utf-8"),
                          hashlib.sha256).hexdigest()
        wire += [(PREFIX + "sign-header-key", ";".join(names)),
                 (PREFIX + "sign-header", sign_header), (PREFIX + "hash-header", digest),
                 ("User-Agent", SDK_USER_AGENT), (PREFIX + "version", SDK_VERSION)]
        if body is None:
            if file is not None:
                body = file + b"\r\n"  # MultipartUtility writes the file, then CRLF
            elif operation in _EMPTY_JSON:
                body = b"{}"
            else:
                body = b""
        return WireRequest(method, operation, tuple(wire), body)


# ------------------------------------------------------------------ Java's behaviour


def java_string_hash(text: str) -> int:
    """``String.hashCode()``: over UTF-16 code units, 32-bit wrap-around (unsigned here)."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h


def java_hashmap_order(keys: list[str]) -> list[str]:
    """The iteration order of a ``java.util.HashMap`` after putting ``keys`` in order.

    Buckets come in index order; a bucket keeps insertion order (resizing splits buckets
    without reordering them). The table starts at 16 and doubles whenever the size
    exceeds three quarters of it.
    """
    capacity = 16
    while len(keys) > capacity * 3 // 4:
        capacity *= 2

    def bucket(key: str) -> int:
        h = java_string_hash(key)
        return (h ^ (h >> 16)) & (capacity - 1)

    return sorted(keys, key=bucket)  # sorted() is stable: insertion order within a bucket


# Gson's JsonWriter (htmlSafe off, its default for JsonElement.toString()) escapes only
# these, and every other control character as \\u00XX.
_GSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\b": "\\b", "\n": "\\n",
                 "\r": "\\r", "\f": "\\f", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def gson_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _GSON_ESCAPES:
            out.append(_GSON_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def gson_object(pairs: list[tuple[str, str]]) -> str:
    """``JsonObject.toString()`` of string properties added in this order."""
    return "{" + ",".join(f"{gson_string(k)}:{gson_string(v)}" for k, v in pairs) + "}"


# ----------------------------------------------------------------------------- sending


def send(endpoint: str, request: WireRequest, timeout: float = 30.0) -> dict:
    """Send ``request`` to ``endpoint`` (``http://host:port``) and decode the JSON answer.

    Header values that are not ISO-8859-1 go out as UTF-8 bytes.
    """
    url = f"{endpoint.rstrip('/')}/{request.operation}"
    req = urllib.request.Request(url, data=request.body if request.method != "GET" else None,
                                 method=request.method)
    for name, value in request.headers:
        req.add_header(name, value.encode("utf-8").decode("latin-1"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
    return json.loads(raw)
