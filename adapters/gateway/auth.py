"""Authentication of VXP SDK requests, as pure functions (no HTTP framework, no database).

The public VXP Java SDK signs every request the same way (``VXP_GATEWAY.md``): it puts
each call parameter in an ``XroadVnpt-<name>`` header, lists the signed names in
``XroadVnpt-sign-header-key``, writes those headers as one JSON object in
``XroadVnpt-sign-header`` and sends ``XroadVnpt-hash-header``, the hex HMAC-SHA256 of that
exact JSON string keyed with the system's secret. So the gateway:

1. reads the system id and looks up its secret (the caller does that: it is IO);
2. recomputes the HMAC over the exact ``sign-header`` string and compares in constant
   time (:func:`authenticate`);
3. checks that ``sign-header-key`` names exactly the signed JSON's keys, and that every
   signed header was also sent with the same value;
4. checks the request was signed for the kind of operation it is sent to
   (:func:`check_operation`: the signed ``Content-Type``);
5. judges the timestamp by the system's :class:`TimestampRule` (below); replayed
   signatures are the caller's to refuse (that needs a store): :attr:`SignedRequest.
   remember_until` says how long it must remember each one.

Everything the operations read afterwards comes from :attr:`SignedRequest.params`, the
signed values only: a parameter header that was sent but not signed is ignored.

**The timestamp rule.** The SDK writes ``XroadVnpt-timestamp`` in its JVM's default time
zone with no zone in the string: a DMS on a server in UTC sends UTC wall-clock time, one
in Asia/Ho_Chi_Minh sends UTC+7. Each system has a zone setting:

- ``auto`` (the default): the timestamp is read both as Vietnam time and as UTC, and is
  accepted if *either* reading is within the window of the gateway's clock;
- ``Asia/Ho_Chi_Minh`` or ``UTC``: that reading only.

Replay protection is kept by remembering each accepted signature until *no* reading
the gateway could ever apply would still accept it (``remember_until``): the latest of
its Vietnam-time and UTC readings, whatever the system's zone setting (which
``set-policy`` can change at any time), plus :data:`MAX_REPLAY_WINDOW`, the largest
window the gateway can be restarted with. Not merely one window of one reading: a
Vietnam-time request read as UTC lies seven hours in the future, so a signature
forgotten sooner would be fresh again seven hours later once the system's zone is
``auto``, or once the gateway runs with a wider window.

Each system also has a policy (``TimestampRule.policy``):

- ``strict``: a reading must be within the window (5 minutes by default) and a signed
  request is accepted once (the caller's replay store; ``sendEdoc`` excepted, idempotent
  by content);
- ``compatible``, the SDK as deployed, which fixes its timestamp when a service object is
  made and re-sends identical requests for the life of the process: no age limit and no
  replay refusal, only sanity bounds: some reading is not more than the window ahead of
  the gateway's clock, and not older than the system's registration (its secret did not
  exist before). A fixed maximum age would stop a long-running DMS on the day its process
  turns that old; what bounds a captured request's life instead is the secret, and the
  address allow-list (:func:`check_peer`) and TLS bound who can capture and replay it.

Other quirks of the SDK this module accepts on purpose:

- ``+SSSS`` at the end of the timestamp is the milliseconds, zero-padded to four digits,
  not an offset;
- ``hash-file`` is the SHA-256 of the package with each byte written as hex *without*
  zero padding (``Integer.toHexString``), :func:`sdk_hash_file`;
- the SDK writes the package and then ``\\r\\n`` into the request body, so the body is
  one CRLF longer than the file it hashed: :func:`package_from_body` takes the bytes that
  ``hash-file`` names.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from vdx.core.model import VIETNAM_TZ
from vdx.errors import GatewayError

PREFIX = "XroadVnpt-"
SDK_VERSION = "3.0.201608"
SDK_USER_AGENT = "JAVASDKAgent/1.0.0 XRoad/VPCP"
SYSTEM_ID = PREFIX + "systemid"
SIGN_HEADER = PREFIX + "sign-header"
SIGN_HEADER_KEY = PREFIX + "sign-header-key"
HASH_HEADER = PREFIX + "hash-header"
PACKAGE_TYPE = "application/octet-stream"  # the Content-Type the SDK signs for sendEdoc only
# Headers the SDK adds outside the signature; never parameters.
_UNSIGNED = {h.lower() for h in (SIGN_HEADER, SIGN_HEADER_KEY, HASH_HEADER, PREFIX + "version")}
_TIMESTAMP = re.compile(r"(\d{2})(\d{2})(\d{4})T(\d{2})(\d{2})(\d{2})\+(\d{1,4})")
_HEX = re.compile(r"[0-9a-fA-F]{64}")
MAX_SIGN_HEADER = 64 * 1024  # far above any real request; the JSON is parsed only below it
# The widest replay window the gateway accepts (``vdx gateway run --replay-window``): each
# signature is remembered for it, whatever the window of the moment.
MAX_REPLAY_WINDOW = timedelta(seconds=86_400)

log = logging.getLogger("vdx.gateway")

STRICT, COMPATIBLE = "strict", "compatible"
POLICIES = (STRICT, COMPATIBLE)
# The zones an SDK timestamp may have been written in, and what each zone setting tries.
ZONES: dict[str, tzinfo] = {"Asia/Ho_Chi_Minh": VIETNAM_TZ, "UTC": UTC}
READINGS: dict[str, tuple[str, ...]] = {"auto": ("Asia/Ho_Chi_Minh", "UTC"),
                                        "Asia/Ho_Chi_Minh": ("Asia/Ho_Chi_Minh",),
                                        "UTC": ("UTC",)}


@dataclass(frozen=True)
class AuthHeaders:
    """The authentication headers of one request, as sent (not yet checked)."""

    system_id: str
    sign_header: str
    sign_header_key: str
    hash_header: str
    sent: Mapping[str, str] = field(repr=False)  # every XroadVnpt-* header, lower-case name


@dataclass(frozen=True)
class TimestampRule:
    """How one system's ``XroadVnpt-timestamp`` is judged (the module docstring).

    ``zone`` is a key of :data:`READINGS`; ``window`` how far from the gateway's clock a
    reading may be; ``policy`` strict (within the window) or compatible (any age between
    ``not_before``, the system's registration, and the window ahead of the clock).
    """

    zone: str = "auto"
    window: timedelta = timedelta(minutes=5)
    policy: str = STRICT
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.zone not in READINGS or self.policy not in POLICIES:
            raise ValueError(f"zone {self.zone!r} / policy {self.policy!r}")


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature verified: who sent it, when, and its signed parameters.

    ``params`` maps parameter names as the SDK signed them (without the prefix) to their
    values; :meth:`param` looks one up ignoring case, as HTTP header names are.
    ``timestamp`` is the accepted reading; ``remember_until`` the last moment at which a
    strict system could accept it under any zone setting and any window the gateway
    accepts: a replay store keeping the signature until then refuses every replay.
    """

    system_id: str
    timestamp: datetime
    signature: str
    params: Mapping[str, str]
    remember_until: datetime

    def param(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.params.items():
            if key.lower() == lowered:
                return value
        return None


def read_auth_headers(headers: Iterable[tuple[str, str]]) -> AuthHeaders:
    """Collect the ``XroadVnpt-*`` headers; refuse a request that lacks the signature.

    ``headers`` are (name, value) pairs as received (values decoded as ISO-8859-1, which
    is what HTTP carries). A header sent twice with different values is refused: which
    one was signed would be ambiguous.
    """
    raw: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if not key.startswith(PREFIX.lower()):
            continue
        if key in raw and raw[key] != value:
            raise GatewayError("gateway.bad_request", f"header {name} was sent twice")
        raw[key] = value
    missing = [h for h in (SYSTEM_ID, SIGN_HEADER, SIGN_HEADER_KEY, HASH_HEADER)
               if not raw.get(h.lower())]
    if SYSTEM_ID in missing:
        raise GatewayError("gateway.unknown_system", f"the request has no {SYSTEM_ID} header")
    if missing:
        raise GatewayError("gateway.bad_signature",
                           f"the request is not signed: {', '.join(missing)} missing")
    sent = {key: _as_text(value) for key, value in raw.items()}
    # The signature is checked over the header exactly as received, not as re-decoded.
    return AuthHeaders(sent[SYSTEM_ID.lower()], raw[SIGN_HEADER.lower()],
                       sent[SIGN_HEADER_KEY.lower()], sent[HASH_HEADER.lower()], sent)


def authenticate(auth: AuthHeaders, secret: str, *, now: datetime,
                 rule: TimestampRule) -> SignedRequest:
    """Verify ``auth`` with the system's ``secret``; return the signed request.

    Raises :class:`GatewayError`: ``gateway.bad_signature``, ``gateway.header_mismatch``,
    ``gateway.stale_request`` or ``gateway.bad_request``.
    """
    if not _hmac_matches(secret, auth.sign_header, auth.hash_header):
        raise GatewayError("gateway.bad_signature",
                           "XroadVnpt-hash-header is not the HMAC-SHA256 of "
                           "XroadVnpt-sign-header with this system's secret")
    signed = _signed_headers(auth.sign_header)
    names = [n for n in auth.sign_header_key.split(";") if n]
    if sorted(n.lower() for n in names) != sorted(k[len(PREFIX):].lower() for k in signed):
        raise GatewayError("gateway.header_mismatch",
                           "XroadVnpt-sign-header-key does not name exactly the headers of "
                           "XroadVnpt-sign-header")
    for key, value in signed.items():
        if auth.sent.get(key.lower()) != value:
            raise GatewayError("gateway.header_mismatch",
                               f"header {key} differs from its signed value")
    params = {key[len(PREFIX):]: value for key, value in signed.items()}
    if _lookup(params, "systemid") != auth.system_id:
        raise GatewayError("gateway.header_mismatch", "the signed system id is another one")
    stamp = _lookup(params, "timestamp")
    if stamp is None:
        raise GatewayError("gateway.bad_signature", "the timestamp is not signed")
    timestamp, remember_until = judge_timestamp(stamp, rule, now, auth.system_id)
    return SignedRequest(auth.system_id, timestamp, auth.hash_header.lower(), params,
                         remember_until)


def judge_timestamp(stamp: str, rule: TimestampRule, now: datetime,
                    system_id: str = "SYSTEMID") -> tuple[datetime, datetime]:
    """The accepted reading of ``stamp`` and until when its signature must be remembered.

    Raises ``gateway.stale_request`` (the message names the command that fixes a wrong
    zone or policy) or ``gateway.bad_request`` for a malformed timestamp.
    """
    readings = {name: parse_timestamp(stamp, ZONES[name]) for name in READINGS[rule.zone]}
    # Over every zone, not the system's setting: that can change while it is remembered.
    remember_until = (max(parse_timestamp(stamp, zone) for zone in ZONES.values())
                      + max(rule.window, MAX_REPLAY_WINDOW))
    if rule.policy == STRICT:
        accepted = [t for t in readings.values() if abs(now - t) <= rule.window]
    else:
        earliest = rule.not_before - rule.window if rule.not_before else None
        accepted = [t for t in readings.values() if t - now <= rule.window
                    and (earliest is None or t >= earliest)]
    if accepted:
        return min(accepted, key=lambda t: abs(now - t)), remember_until
    raise GatewayError("gateway.stale_request", _stale_message(stamp, rule, now, system_id))


def _stale_message(stamp: str, rule: TimestampRule, now: datetime, system_id: str) -> str:
    # The refusal reaches the agency's software; its administrator forwards it to the
    # hub's, so it names the one command that would have accepted this request.
    read = "; ".join(f"{_age(now - parse_timestamp(stamp, ZONES[name]))} the gateway's clock "
                     f"read as {name}" for name in READINGS[rule.zone])
    command = f"vdx gateway set-policy {system_id}"
    other = [name for name in ZONES if name not in READINGS[rule.zone]
             and abs(now - parse_timestamp(stamp, ZONES[name])) <= rule.window]
    if other:
        fix = (f"read as {other[0]} it is current: if the client's server runs in that zone, "
               f"`{command} --zone auto`")
    elif rule.policy == STRICT:
        fix = (f"the VXP SDK fixes its timestamp when a service object is made: software that "
               f"keeps one object for its whole run needs `{command} --policy compatible`")
    else:
        fix = ("the compatible policy accepts any age since the system was registered, but "
               "not a clock running ahead of the gateway's or a request older than its secret")
    return (f"timestamp {stamp} is {read}; requests are accepted within "
            f"{int(rule.window.total_seconds())} s ({rule.policy} policy, zone {rule.zone}); "
            f"{fix}")


def check_operation(signed: SignedRequest, operation: str, takes_package: bool) -> None:
    """Refuse a request signed for another kind of operation: ``gateway.wrong_operation``.

    The SDK does not sign the path, but it signs ``Content-Type`` with every call (both
    versions put it in the signed header map first): ``application/octet-stream`` for
    ``sendEdoc`` (``takes_package``), ``application/json`` for every other operation.
    """
    content_type = signed.param("Content-Type")
    if content_type is None:
        raise GatewayError("gateway.wrong_operation",
                           f"Content-Type is not among the signed headers; the VXP SDK signs "
                           f"it with every request, which binds it to {operation}")
    signed_as_package = content_type.split(";")[0].strip().lower() == PACKAGE_TYPE
    if signed_as_package != takes_package:
        meant = "sendEdoc" if signed_as_package else "the operations other than sendEdoc"
        raise GatewayError("gateway.wrong_operation",
                           f"this request was signed with Content-Type {content_type[:80]!r}, "
                           f"which the VXP SDK signs for {meant}, not for {operation}")


def check_peer(peer: str | None, allow_from: tuple[str, ...], system_id: str) -> None:
    """Refuse ``peer`` (the client's address) unless ``allow_from`` is empty or one of its
    networks holds it: ``gateway.address_not_allowed``.

    The refusal reaches a caller that has not authenticated, so it names neither the
    allowed networks nor the address seen; both go to the gateway's log."""
    if not allow_from:
        return
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    if address is not None and any(address in ipaddress.ip_network(n) for n in allow_from):
        return
    log.warning("address not allowed", extra={"event": "address_not_allowed",
                                               "system_id": system_id, "peer": peer,
                                               "allow_from": list(allow_from)})
    raise GatewayError("gateway.address_not_allowed",
                       f"system {system_id} does not accept requests from this address; the "
                       f"hub's administrator sees the addresses it accepts with `vdx gateway "
                       f"systems` and changes them with `vdx gateway set-policy {system_id} "
                       f"--allow-from CIDR`")


def _hmac_matches(secret: str, sign_header: str, hash_header: str) -> bool:
    if not _HEX.fullmatch(hash_header):
        return False
    expected = hash_header.lower().encode("ascii")
    # HTTP carries header bytes; they arrive decoded as ISO-8859-1. The SDK hashed the
    # UTF-8 of its Java string: a Java client sends non-ASCII characters up to U+00FF as
    # those single bytes, other clients send UTF-8. Both readings are tried, in constant
    # time each, and the secret never leaves this function.
    raw = sign_header.encode("latin-1", errors="replace")
    candidates = {raw, sign_header.encode("utf-8")}
    ok = False
    for message in candidates:
        digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(digest.encode("ascii"), expected)
    return ok


def _signed_headers(sign_header: str) -> dict[str, str]:
    if len(sign_header) > MAX_SIGN_HEADER:
        raise GatewayError("gateway.bad_request", "XroadVnpt-sign-header is too large")

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key.lower() in {k.lower() for k in seen}:
                raise ValueError(f"{key} appears twice")
            seen[key] = value
        return seen

    try:
        decoded = json.loads(_as_text(sign_header), object_pairs_hook=no_duplicates)
    except ValueError as exc:
        raise GatewayError("gateway.bad_request",
                           f"XroadVnpt-sign-header is not a JSON object ({exc})") from exc
    except RecursionError as exc:  # arrays nested thousands deep, under a valid HMAC
        raise GatewayError("gateway.bad_request",
                           "XroadVnpt-sign-header is nested too deeply; the VXP SDK signs "
                           "one flat JSON object of strings") from exc
    if not isinstance(decoded, dict) or not all(
            isinstance(k, str) and k.lower().startswith(PREFIX.lower())
            and k.lower() not in _UNSIGNED and isinstance(v, str)
            for k, v in decoded.items()):
        raise GatewayError("gateway.bad_request",
                           "XroadVnpt-sign-header must map XroadVnpt-* names to strings")
    return decoded


def _as_text(value: str) -> str:
    # Undo ISO-8859-1 decoding of UTF-8 header bytes when that is what they were.
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _lookup(params: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in params.items() if k.lower() == name), None)


def _age(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    return f"{seconds} s {'behind' if delta.total_seconds() > 0 else 'ahead of'}"


# ------------------------------------------------------------------ the SDK's formats


def format_timestamp(moment: datetime, zone: tzinfo) -> str:
    """``moment`` as the SDK writes it: ``ddMMyyyy'T'HHmmss+SSSS`` in ``zone``."""
    local = moment.astimezone(zone)
    return f"{local:%d%m%Y}T{local:%H%M%S}+{local.microsecond // 1000:04d}"


def parse_timestamp(text: str, zone: tzinfo) -> datetime:
    """The aware time of an SDK timestamp read in ``zone``; ``gateway.bad_request``."""
    match = _TIMESTAMP.fullmatch(text)
    if match:
        day, month, year, hour, minute, second, millis = (int(g) for g in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=zone)
        except ValueError:
            pass
    raise GatewayError("gateway.bad_request",
                       f"timestamp {text!r} is not in the form ddMMyyyy'T'HHmmss+SSSS")


def sdk_hash_file(data: bytes) -> str:
    """SHA-256 of ``data`` as the SDK writes ``hash-file``: each byte in hex without zero
    padding (0x05 is ``5``, 0x0d is ``d``)."""
    return "".join(format(b, "x") for b in hashlib.sha256(data).digest())


def package_from_body(body: bytes, hash_file: str) -> bytes:
    """The package in a ``sendEdoc`` body, as named by its ``hash-file``.

    Accepts the SDK's unpadded hex and ordinary (padded) hex, over the body as is or
    without the CRLF the SDK appends after the file. Raises ``gateway.hash_mismatch``.
    """
    wanted = hash_file.strip().lower().encode("ascii", errors="replace")
    candidates = [body]
    if body.endswith(b"\r\n"):
        candidates.append(body[:-2])
    for candidate in candidates:
        for form in (sdk_hash_file(candidate), hashlib.sha256(candidate).hexdigest()):
            if hmac.compare_digest(form.encode("ascii"), wanted):
                return candidate
    raise GatewayError("gateway.hash_mismatch",
                       f"hash-file {hash_file[:80]!r} is not the SHA-256 of the "
                       f"{len(body):,}-byte body (with or without its final CRLF)")
