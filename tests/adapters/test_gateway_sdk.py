"""The VXP SDK's request signing, byte for byte, and the gateway's check of it (pure).

``vxp_sdk/vectors.json`` beside this file was made by ``vxp_sdk/GoldenVectors.java`` with the
Java classes the public SDK uses (``HashMap``, Gson's ``JsonObject``, ``HmacSHA256``,
commons-codec ``Hex``, ``SimpleDateFormat``, ``Integer.toHexString``); the Python twin must
produce exactly the same headers, in the same order, and the gateway must accept them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vdx_adapters.gateway import auth
from vdx_adapters.gateway.sdk import SdkService, gson_object, java_hashmap_order

from vdx.core.model import VIETNAM_TZ
from vdx.errors import GatewayError

VECTORS = json.loads((Path(__file__).parent / "vxp_sdk" / "vectors.json").read_text("utf-8"))
CREATED = datetime.fromtimestamp(VECTORS["epoch_ms"] / 1000, UTC)
SECRET_A = "A7TKG/r2gOKTEpe1MhWx6zw8O4JfzN0KkCRS6HZY81Ve"
SECRET_B = 'bí mật "quoted" \\ secret'
WINDOW = timedelta(minutes=5)


def file(size: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(size))


def sdk_calls():
    """The calls GoldenVectors.java made, through two service objects as it did."""
    a = SdkService("vxp.saas.03", SECRET_A, created=CREATED)
    b = SdkService("hệ-thống.01", SECRET_B, created=CREATED + timedelta(milliseconds=1))
    doc = "5bebcfef-f858-e3e0-cc15-4762aa01bb02"
    return [
        (SECRET_A, a.build("getReceivedEdocList", {"servicetype": "eDoc",
                                                   "messagetype": "edoc"})),
        (SECRET_A, a.build("getEdoc", {"filePath": "xml", "docId": doc})),
        (SECRET_A, a.build("updateStatus", {"status": "done", "docId": doc})),
        (SECRET_B, b.build("sendEdoc", {
            "from": "000.00.00.G22", "servicetype": "eDoc", "messagetype": "edoc",
            "to": '[{"code":"000.00.00.H41"},"<&>="]',
            "note": "Công văn\tsố\n1\u2028\u0001"}, file=file(5000))),
        (SECRET_B, b.build("getSentEdocList", {
            "docId": "d-1", "servicetype": "eDoc", "messagetype": "status", "alpha": "1",
            "beta": "2", "gamma": "3", "delta": "4", "epsilon": "5"})),
    ]


def test_requests_are_signed_byte_for_byte_as_the_java_sdk_signs_them():
    calls = sdk_calls()
    assert [r.operation for _, r in calls] == [v["call"] for v in VECTORS["calls"]]
    for (_, request), vector in zip(calls, VECTORS["calls"], strict=True):
        assert [list(h) for h in request.headers] == vector["headers"], request.operation


def test_hash_file_is_sha256_without_zero_padding_byte_for_byte():
    for size, expected in VECTORS["hash_file"].items():
        assert auth.sdk_hash_file(file(int(size))) == expected
    # one byte: the Java form drops leading zeros of bytes, so it is shorter than 64
    digest = hashlib.sha256(file(1)).digest()
    assert any(b < 0x10 for b in digest)
    assert len(VECTORS["hash_file"]["1"]) == 64 - sum(b < 0x10 for b in digest)


def test_the_timestamp_is_local_time_with_milliseconds_not_a_zone():
    stamp = VECTORS["calls"][0]["headers"][3][1]
    assert stamp == "22112026T085015+0042"
    assert auth.format_timestamp(CREATED, VIETNAM_TZ) == stamp
    assert auth.parse_timestamp(stamp, VIETNAM_TZ) == CREATED
    for bad in ("22112026T085015", "32112026T085015+0042", "2211202T085015+0042", ""):
        with pytest.raises(GatewayError) as info:
            auth.parse_timestamp(bad, VIETNAM_TZ)
        assert info.value.code == "gateway.bad_request"


def test_the_java_hashmap_order_and_gson_escaping():
    # String.hashCode buckets, not insertion order; a 13th key grows the table to 32
    assert java_hashmap_order(["timestamp", "systemid", "Content-Type"]) == \
        ["systemid", "timestamp", "Content-Type"]
    assert gson_object([("k", 'a"b\\c\t\u2028\u0001<>&=é')]) == \
        '{"k":"a\\"b\\\\c\\t\\u2028\\u0001<>&=é"}'


# --------------------------------------------------------------------- the check


VIETNAM_ONLY = auth.TimestampRule(zone="Asia/Ho_Chi_Minh", window=WINDOW)


def check(request, secret, now=CREATED, headers=None, rule=VIETNAM_ONLY) -> auth.SignedRequest:
    parsed = auth.read_auth_headers(headers if headers is not None else request.headers)
    return auth.authenticate(parsed, secret, now=now, rule=rule)


def code_of(fn) -> str:
    with pytest.raises(GatewayError) as info:
        fn()
    return info.value.code


def as_received(headers) -> list[tuple[str, str]]:
    """Headers as an HTTP server hands them over: UTF-8 bytes read as ISO-8859-1."""
    return [(k, v.encode("utf-8").decode("latin-1")) for k, v in headers]


def test_every_sdk_request_authenticates_and_exposes_only_signed_parameters():
    for secret, request in sdk_calls():
        signed = check(request, secret, headers=as_received(request.headers))
        assert signed.system_id in ("vxp.saas.03", "hệ-thống.01")
        assert signed.signature == request.header("XroadVnpt-hash-header")
    _, listing = sdk_calls()[0]
    extra = [*listing.headers, ("XroadVnpt-docId", "sneaked-in")]
    signed = check(listing, SECRET_A, headers=extra)
    assert signed.param("docid") is None and signed.param("MESSAGETYPE") == "edoc"


def test_bad_signatures_tampering_and_stale_requests_are_refused():
    _, request = sdk_calls()[0]
    assert code_of(lambda: check(request, "wrong secret")) == "gateway.bad_signature"
    tampered = [(k, "status" if k == "XroadVnpt-messagetype" else v) for k, v in request.headers]
    assert code_of(lambda: check(request, SECRET_A, headers=tampered)) == \
        "gateway.header_mismatch"
    missing = [(k, v) for k, v in request.headers if k != "XroadVnpt-servicetype"]
    assert code_of(lambda: check(request, SECRET_A, headers=missing)) == \
        "gateway.header_mismatch"
    fewer_keys = [(k, "systemid;timestamp" if k == "XroadVnpt-sign-header-key" else v)
                  for k, v in request.headers]
    assert code_of(lambda: check(request, SECRET_A, headers=fewer_keys)) == \
        "gateway.header_mismatch"
    for skew in (timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)):
        assert code_of(lambda s=skew: check(request, SECRET_A, now=CREATED + s)) == \
            "gateway.stale_request"
    check(request, SECRET_A, now=CREATED + timedelta(minutes=4, seconds=59))
    no_system = [(k, v) for k, v in request.headers if k != "XroadVnpt-systemid"]
    assert code_of(lambda: auth.read_auth_headers(no_system)) == "gateway.unknown_system"
    unsigned = [(k, v) for k, v in request.headers if k != "XroadVnpt-hash-header"]
    assert code_of(lambda: auth.read_auth_headers(unsigned)) == "gateway.bad_signature"
    twice = [*request.headers, ("XroadVnpt-systemid", "another")]
    assert code_of(lambda: auth.read_auth_headers(twice)) == "gateway.bad_request"


@pytest.mark.parametrize("sign_header", [
    "not json", "[]", '{"XroadVnpt-a": 1}', '{"a": "b"}',
    '{"XroadVnpt-a": "1", "xroadvnpt-A": "2"}', '{"XroadVnpt-hash-header": "x"}',
])
def test_a_malformed_sign_header_is_refused_clearly_even_when_its_hmac_is_right(sign_header):
    import hmac

    digest = hmac.new(b"s", sign_header.encode(), hashlib.sha256).hexdigest()
    headers = [("XroadVnpt-systemid", "x"), ("XroadVnpt-sign-header", sign_header),
               ("XroadVnpt-sign-header-key", "a"), ("XroadVnpt-hash-header", digest)]
    parsed = auth.read_auth_headers(headers)
    with pytest.raises(GatewayError) as info:
        auth.authenticate(parsed, "s", now=CREATED, rule=auth.TimestampRule())
    assert info.value.code == "gateway.bad_request"


def test_the_package_is_taken_from_the_body_as_hash_file_names_it():
    package = file(5000)
    quirk = auth.sdk_hash_file(package)
    assert auth.package_from_body(package + b"\r\n", quirk) == package  # the SDK's body
    assert auth.package_from_body(package, quirk) == package
    assert auth.package_from_body(package, hashlib.sha256(package).hexdigest()) == package
    assert auth.package_from_body(package, quirk.upper()) == package
    for body in (package + b"x", package[:-1], b""):
        assert code_of(lambda b=body: auth.package_from_body(b, quirk)) == \
            "gateway.hash_mismatch"


def test_a_timestamp_pinned_to_one_zone_is_read_in_that_zone_only():
    utc_clock = SdkService("s", "k", created=CREATED, zone=UTC)
    request = utc_clock.build("getEdoc", {"docId": "d"})
    # a client whose JVM runs in UTC looks 7 hours stale to a system pinned to Vietnam time
    with pytest.raises(GatewayError) as info:
        check(request, "k")
    assert info.value.code == "gateway.stale_request"
    assert "read as UTC it is current" in info.value.message
    assert "vdx gateway set-policy s --zone auto" in info.value.message
    assert check(request, "k", rule=auth.TimestampRule(zone="UTC", window=WINDOW))


def test_system_secrets_are_sealed_with_the_gateways_key():
    from vdx_adapters.gateway import tables as gateway

    key = "a long random key for the test"
    sealed = gateway.seal_secret("s3cret", key)
    assert sealed.startswith("fernet:") and "s3cret" not in sealed
    assert gateway.open_secret(sealed, key) == "s3cret"
    assert gateway.open_secret("plain:old", None) == "old"  # written before migration 0008
    for wrong in ("another key", "", None):
        assert code_of(lambda k=wrong: gateway.open_secret(sealed, k)) == "gateway.unknown_system"
