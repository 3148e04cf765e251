"""The REAL, unmodified VXP SDK (SDKVXP 2.0.1 and 2.0.0 jars) against the gateway and hub.

``tests/adapters/vxp_sdk/SdkDriver.java`` is compiled at test time against each SDK version's jars
(``../shared/vxp-sdk``) and run as one JVM per scenario, in UTC and in Asia/Ho_Chi_Minh,
talking HTTP to the gateway served by uvicorn on a socket, on a real hub (broker,
database, signatures). Every SDK call's outcome comes back as data: the result object's
fields, or the exception it threw, and the exceptions the SDK printed and swallowed (it
catches its own NullPointerExceptions and hands back a result whose fields are all null).

What is asserted: the SDK completes send → list → get → done →
sendstatus → liststatus → getSentEdocList (receiveStatus 03) between two agencies, with a
service object per call and with one object kept for more than 5 minutes of polling (the
gateway's clock is moved ahead; the JVM's object keeps its old timestamp), and every
refusal reaches the SDK's caller as a result carrying the hub's error code, never an
exception, for both SDK versions. One slow test does the kept-object case in real time: a
gateway on its own, real clock, polled every 15 s for more than 5 minutes.

Without ``java``/``javac`` or the jars these tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from vdx_adapters.gateway import Gateway
from vdx_adapters.gateway import systems as gateway_systems

from tests.adapters.vxp_sdk import runner
from tests.adapters.vxp_sdk.runner import SDK_VERSIONS, ZONES, SdkCall, SdkDriver, params
from tests.conftest import require_service
from tests.support.gateway import GatewayWorld, running_gateway, serve_http
from tests.support.hub import Agency, running_hub
from vdx import build, parse
from vdx.core import model

pytestmark = pytest.mark.rabbitmq

EDOC = {"servicetype": "eDoc", "messagetype": "edoc"}
STATUS = {"servicetype": "eDoc", "messagetype": "status"}


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def sdk_classes(tmp_path_factory) -> dict[str, Path]:
    """SdkDriver compiled once per session against each SDK version (in pytest's tmp)."""
    problem = runner.toolchain_problem()
    if problem:
        require_service("java and the VXP SDK jars", problem)
    root = tmp_path_factory.mktemp("vxp-sdk-driver")
    return {version: runner.compile_java(runner.HERE / "SdkDriver.java", version, root / version)
            for version in SDK_VERSIONS}


class MovableClock:
    """The gateway's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class World:
    gateway: GatewayWorld
    endpoint: str
    clock: MovableClock | None  # None: the gateway runs on its own, real clock
    tmp: Path
    counter: Iterator[int]

    @property
    def hub(self):
        return self.gateway.hub


@pytest.fixture(scope="module")
def world(tmp_path_factory, sdk_classes) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("real-sdk")
    clock = MovableClock()
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22", "h41": "H41"}, clock=clock) as w, \
            serve_http(w.gateway) as endpoint:
        yield World(w, endpoint, clock, tmp, itertools.count(1))


@pytest.fixture
def real_clock_world(tmp_path_factory, sdk_classes) -> Iterator[World]:
    """A hub and a gateway of their own, the gateway on its default clock (real time)."""
    tmp = tmp_path_factory.mktemp("real-sdk-real-clock")
    with running_hub("sqlite", tmp, agencies=("G22", "H41")) as hub, \
            running_gateway(hub, tmp, {"g22": "G22"}) as w, \
            serve_http(w.gateway) as endpoint:
        yield World(w, endpoint, None, tmp, itertools.count(1))


@dataclass
class Party:
    """An agency behind its own gateway system, as the SDK's configuration sees it."""

    agency: Agency
    system_id: str
    secret: str

    @property
    def code(self) -> str:
        return self.agency.code


def add_system(world: World, agency: Agency, policy: str | None = None) -> Party:
    """A new gateway system for ``agency``; ``policy`` compatible or strict (the default)."""
    new = gateway_systems.add_system(world.hub.admin, f"dms.real-sdk.{uuid.uuid4().hex[:10]}",
                                     (agency.code,), credentials_file=world.gateway.credentials,
                                     **({"policy": policy} if policy else {}))
    return Party(agency, new.system.system_id, new.secret)


def new_pair(world: World, policy: str | None = None) -> tuple[Party, Party]:
    """Two fresh agencies, each behind its own system: nothing else is in their mailboxes."""
    n = next(world.counter)
    sender = add_system(world, world.hub.add_agency(f"S{n:02d}"), policy)
    receiver = add_system(world, world.hub.add_agency(f"R{n:02d}"), policy)
    return sender, receiver


@pytest.fixture
def jvm(sdk_classes, tmp_path) -> Callable[[str, str], SdkDriver]:
    """Start ``SdkDriver`` for (version, zone); stopped after the test."""
    started: list[SdkDriver] = []

    def start(version: str, zone: str) -> SdkDriver:
        log = tmp_path / f"jvm-{len(started)}.log"
        driver = SdkDriver(sdk_classes[version], version, zone, log)
        started.append(driver)
        assert driver.ready["timezone"] == zone and \
            driver.ready["sdk_jar"] == f"SDKVXP-{version}.jar", driver.ready
        return driver

    yield start
    for driver in started:
        driver.close()


def configure(sdk: SdkDriver, world: World, party: Party, name: str | None = None,
              secret: str | None = None, system_id: str | None = None) -> str:
    name = name or party.system_id
    sdk.configure(name, world.endpoint, system_id or party.system_id, secret or party.secret,
                  world.tmp / "sdk-store" / sdk.version / name)
    return name


# ------------------------------------------------------------------------- helpers


def expect_ok(call: SdkCall, **fields) -> SdkCall:
    assert call.is_result(), f"{call.op}: not a clean result\n{call.describe()}"
    assert (call.status, call.error_code) == ("OK", "0"), call.describe()
    for name, value in fields.items():
        assert call.field(name) == value, f"{call.op}.{name}\n{call.describe()}"
    return call


def expect_refused(call: SdkCall, code: str | Callable[[str], bool]) -> None:
    """A result object (no exception thrown or swallowed) carrying the hub's error code."""
    assert call.returned, f"{call.op} threw instead of answering\n{call.describe()}"
    assert call.result is not None and not call.swallowed, \
        f"{call.op}: the SDK swallowed an exception\n{call.describe()}"
    assert call.status == "FAIL", call.describe()
    matches = code(call.error_code or "") if callable(code) else call.error_code == code
    assert matches, f"{call.op}: ErrorCode {call.error_code!r}, expected {code}\n" \
                    f"{call.describe()}"
    assert call.field("errorDesc"), call.describe()


def poll(fn: Callable[[], SdkCall], until: Callable[[SdkCall], bool],
         timeout: float = 30.0) -> SdkCall:
    deadline = time.monotonic() + timeout
    while True:
        call = fn()
        if until(call) or time.monotonic() > deadline:
            return call
        time.sleep(0.2)


def listed(call: SdkCall) -> list[dict]:
    return call.field("knobsticks") or [] if call.status == "OK" else []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(world: World, data: bytes) -> str:
    path = world.tmp / "packages" / f"{uuid.uuid4().hex}.edxml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def store(world: World, sdk: SdkDriver) -> str:
    """Where getEdoc writes what it fetched (its ``filePath`` parameter)."""
    path = world.tmp / "received" / sdk.version / sdk.zone.replace("/", "-")
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def check_zone_of(sdk: SdkDriver, call: SdkCall) -> None:
    """The SDK wrote its timestamp in the JVM's zone, without the zone (ms after '+')."""
    stamp = call.timestamp
    assert stamp and len(stamp) == 20 and stamp[8] == "T" and stamp[15] == "+", stamp
    local = datetime.strptime(stamp[:15], "%d%m%YT%H%M%S").replace(tzinfo=ZoneInfo(sdk.zone))
    assert abs(datetime.now(UTC) - local) < timedelta(minutes=2), (sdk.zone, stamp)


# ---------------------------------------------------------------------- the round trip


def round_trip(sdk: SdkDriver, world: World, sender: Party, receiver: Party, *,
               kept: bool, strict: Party | None = None) -> None:
    """send → list → get → done → sendstatus → liststatus → sent, between two agencies.

    ``kept``: one service object per agency for the whole scenario (its timestamp fixed
    when it was made), and the gateway's clock moved 6 minutes ahead after the first
    polls; ``strict``: a system without the compatible policy, whose kept object must be
    refused (as a result) once it repeats itself or is older than the window.
    """
    s_cfg, r_cfg = configure(sdk, world, sender), configure(sdk, world, receiver)
    if kept:
        stamps = {"S": sdk.open("S", s_cfg), "R": sdk.open("R", r_cfg)}
        on_s, on_r = {"obj": "S"}, {"obj": "R"}
    else:
        on_s, on_r = {"config": s_cfg}, {"config": r_cfg}
    package = sender.agency.document(receiver.code)
    document_id = parse(package).document_id

    sent = expect_ok(sdk.call("sendEdoc", params(**{"from": sender.code}, **EDOC),
                              write(world, package), **on_s))
    check_zone_of(sdk, sent)
    doc_id = sent.field("docID")
    assert doc_id, sent.describe()

    listing = poll(lambda: sdk.call("getReceivedEdocList", params(**EDOC), **on_r),
                   lambda c: len(listed(c)) >= 1)
    expect_ok(listing)
    (item,) = listed(listing)
    assert (item["from"], item["to"], item["messageType"], item["serviceType"]) == \
        (sender.code, receiver.code, "edoc", "eDoc"), listing.describe()
    assert item["id"] and item["status"], listing.describe()
    if kept:  # identical polls, then more than 5 minutes of them (by the gateway's clock)
        again = sdk.call("getReceivedEdocList", params(**EDOC), **on_r)
        expect_ok(again)
        assert [i["id"] for i in listed(again)] == [item["id"]]
        if strict is not None:
            strict_cfg = configure(sdk, world, strict)
            sdk.open("X", strict_cfg)
            expect_ok(sdk.call("getReceivedEdocList", params(**EDOC), obj="X"))
            expect_refused(sdk.call("getReceivedEdocList", params(**EDOC), obj="X"),
                           "gateway.replayed_request")
        world.clock.offset = timedelta(minutes=6)
        if strict is not None:
            expect_refused(sdk.call("getReceivedEdocList", params(**EDOC), obj="X"),
                           lambda code: code in ("gateway.stale_request",
                                                 "gateway.replayed_request"))
    if sdk.ready["has_count"]:
        expect_ok(sdk.call("countReceiveEdoc", "{}", **on_r), count=1)

    # filePath is where the SDK writes the package (filePath/yyyy/MM/docId.edxml)
    got = expect_ok(sdk.call("getEdoc", params(filePath=store(world, sdk), docId=item["id"]),
                             **on_r))
    assert got.field("data") == package.decode("utf-8"), "getEdoc: not the bytes sent"
    assert got.reply.get("file_sha256") == sha256(package), got.describe()
    # fail offers it again, done takes it away
    expect_ok(sdk.call("updateStatus", params(status="fail", docId=item["id"]), **on_r))
    offered = expect_ok(sdk.call("getReceivedEdocList", params(**EDOC), **on_r))
    assert [(i["id"], i["status"]) for i in listed(offered)] == [(item["id"], "fail")], \
        offered.describe()
    expect_ok(sdk.call("updateStatus", params(status="done", docId=item["id"]), **on_r))
    assert listed(expect_ok(sdk.call("getReceivedEdocList", params(**EDOC), **on_r))) == []

    status = receiver.agency.status(sender.code, document_id, "03")
    expect_ok(sdk.call("sendEdoc", params(**{"from": receiver.code}, **STATUS),
                       write(world, status), **on_r))
    statuses = poll(lambda: sdk.call("getReceivedEdocList", params(**STATUS), **on_s),
                    lambda c: len(listed(c)) >= 1)
    expect_ok(statuses)
    (back,) = listed(statuses)
    assert (back["from"], back["messageType"]) == (receiver.code, "status"), statuses.describe()
    if sdk.ready["has_count"]:
        expect_ok(sdk.call("countReceiveStatus", "{}", **on_s), count=1)
    got_status = expect_ok(sdk.call("getEdoc", params(filePath=store(world, sdk),
                                                      docId=back["id"]), **on_s))
    assert "<edXML:StatusCode>03</edXML:StatusCode>" in got_status.field("data")
    expect_ok(sdk.call("updateStatus", params(status="done", docId=back["id"]), **on_s))

    lines = poll(lambda: sdk.call("getSentEdocList", params(**EDOC, docId=doc_id), **on_s),
                 lambda c: c.status == "OK" and any(
                     line.get("receiveStatus") == "03" for line in c.field("statusResult") or ()))
    expect_ok(lines)
    (line,) = lines.field("statusResult")
    assert (line["senderDocId"], line["receiverDocId"], line["fromCode"], line["toCode"],
            line["receiveStatus"]) == (doc_id, item["id"], sender.code, receiver.code, "03"), \
        lines.describe()

    agencies = expect_ok(sdk.call("getAgenciesList", "{}", config=s_cfg))
    codes = {a["code"] for a in agencies.field("agencies") or ()}
    assert {sender.code, receiver.code} <= codes, agencies.describe()
    if kept:  # the same two objects all along: one timestamp each, never renewed
        assert (sent.timestamp, lines.timestamp) == (stamps["S"], stamps["S"])
        assert (listing.timestamp, got.timestamp) == (stamps["R"], stamps["R"])


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("version", SDK_VERSIONS)
def test_a_service_object_per_call_completes_the_round_trip(world, jvm, version, zone):
    sdk = jvm(version, zone)
    sender, receiver = new_pair(world)
    round_trip(sdk, world, sender, receiver, kept=False)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("version", SDK_VERSIONS)
def test_one_object_kept_for_more_than_five_minutes_completes_the_round_trip(
        world, jvm, version, zone):
    sdk = jvm(version, zone)
    sender, receiver = new_pair(world, policy="compatible")
    strict = add_system(world, world.hub.agency("H41"))  # the default policy: strict
    try:
        round_trip(sdk, world, sender, receiver, kept=True, strict=strict)
    finally:
        world.clock.offset = timedelta(0)


@pytest.mark.parametrize("version", SDK_VERSIONS)
def test_a_strict_system_refuses_a_kept_object_with_a_result(world, jvm, version):
    """Without the compatible policy, a kept object's second identical request is a
    replay and, 6 minutes on, any request of it is stale: both reach the caller as
    results carrying the code; a new object works again."""
    sdk = jvm(version, "Asia/Ho_Chi_Minh")
    party = add_system(world, world.hub.agency("G22"))
    config = configure(sdk, world, party)
    sdk.open("kept", config)
    poll_once = params(**EDOC)
    expect_ok(sdk.call("getReceivedEdocList", poll_once, obj="kept"))
    expect_refused(sdk.call("getReceivedEdocList", poll_once, obj="kept"),
                   "gateway.replayed_request")
    world.clock.offset = timedelta(minutes=6)
    try:
        expect_refused(sdk.call("getSentEdocList", params(**EDOC, docId="x"), obj="kept"),
                       "gateway.stale_request")
    finally:
        world.clock.offset = timedelta(0)
    expect_ok(sdk.call("getReceivedEdocList", poll_once, config=config))


POLL_EVERY = 15.0  # seconds between two polls of the kept receiver object
MARK = timedelta(minutes=5)  # the replay window a strict system would apply


def sdk_time(stamp: str, zone: str) -> datetime:
    """An SDK timestamp (ddMMyyyyTHHmmss+SSSS, SSSS the milliseconds) read in ``zone``."""
    assert len(stamp) == 20 and stamp[8] == "T" and stamp[15] == "+", stamp
    wall = datetime.strptime(stamp[:15], "%d%m%YT%H%M%S")
    return wall.replace(tzinfo=ZoneInfo(zone)) + timedelta(milliseconds=int(stamp[16:]))


@pytest.mark.slow
def test_kept_objects_poll_in_real_time_for_more_than_five_minutes(real_clock_world, jvm):
    """The SDK as deployed, in real time: SDK 2.0.1 in a JVM in UTC, one
    ``KnobstickServiceImp`` per agency made once, a ``compatible`` system each, and a
    gateway on its real clock (nothing moved). The receiver polls with the same request
    every 15 s for 5 min 15 s; the sender sends one document near the start and one after
    the 5-minute mark. The receiver lists, gets and marks done both, sends a 03 for each
    through its old object after the mark, and the sender's old object sees receiveStatus
    03 in getSentEdocList. Every call is a clean OK result, and both objects are more than
    300 s old by the gateway's clock at their last call."""
    world = real_clock_world
    gateway = world.gateway.gateway
    assert gateway.clock is inspect.signature(Gateway).parameters["clock"].default, \
        "this test needs the gateway's own clock, not an injected one"
    sdk = jvm("2.0.1", "UTC")
    sender, receiver = new_pair(world, policy="compatible")
    s_cfg, r_cfg = configure(sdk, world, sender), configure(sdk, world, receiver)
    stamps = {"S": sdk.open("S", s_cfg), "R": sdk.open("R", r_cfg)}
    made = {obj: sdk_time(stamp, sdk.zone) for obj, stamp in stamps.items()}
    assert all(abs(gateway.clock() - t) < timedelta(seconds=30) for t in made.values()), \
        (stamps, gateway.clock())
    calls: list[tuple[str, str, timedelta]] = []  # (object, op, its age by the gateway's clock)

    def age(obj: str) -> timedelta:
        return gateway.clock() - made[obj]

    def through(obj: str, op: str, *args: str, **fields) -> SdkCall:
        """One call through kept object ``obj``: a clean OK result, its timestamp unchanged."""
        before = age(obj)  # the gateway read the request at this age or later
        call = expect_ok(sdk.call(op, *args, obj=obj), **fields)
        assert call.timestamp == stamps[obj], f"{obj}: the object renewed its timestamp\n" \
                                              f"{call.describe()}"
        calls.append((obj, op, before))
        return call

    packages: dict[str, bytes] = {}  # the sender's docID → the package it sent
    sent_at: dict[str, timedelta] = {}  # docID → the sender object's age when sent

    def send_document() -> None:
        package = sender.agency.document(receiver.code)
        sent_at_age = age("S")
        sent = through("S", "sendEdoc", params(**{"from": sender.code}, **EDOC),
                       write(world, package))
        doc_id = sent.field("docID")
        assert doc_id and doc_id not in packages, sent.describe()
        packages[doc_id] = package
        sent_at[doc_id] = sent_at_age

    poll_request = params(**EDOC)  # the same request every time, through the same object
    received: dict[str, str] = {}  # the receiver's id → the package's document id
    done: set[str] = set()
    poll_ages: list[timedelta] = []
    late = MARK + timedelta(seconds=5)  # when the second document goes
    start = time.monotonic()
    for tick in itertools.count():
        assert tick <= (late.total_seconds() // POLL_EVERY) + 4, \
            f"the second document never reached the poller: {received}, {done}"
        time.sleep(max(0.0, start + tick * POLL_EVERY - time.monotonic()))
        poll_ages.append(age("R"))
        listing = through("R", "getReceivedEdocList", poll_request)
        if tick == 0:
            assert listed(listing) == [], listing.describe()
        for item in listed(listing):
            assert item["id"] not in done, f"marked done, offered again\n{listing.describe()}"
            assert (item["from"], item["to"], item["messageType"], item["serviceType"]) == \
                (sender.code, receiver.code, "edoc", "eDoc"), listing.describe()
            got = through("R", "getEdoc", params(filePath=store(world, sdk), docId=item["id"]))
            data = got.field("data").encode("utf-8")
            assert data in packages.values(), "getEdoc: not the bytes sent"
            assert got.reply.get("file_sha256") == sha256(data), got.describe()
            through("R", "updateStatus", params(status="done", docId=item["id"]))
            received[item["id"]] = parse(data).document_id
            done.add(item["id"])
        if tick == 0:
            send_document()  # near the start
        if len(packages) == 1 and age("S") + timedelta(seconds=POLL_EVERY) > late:
            while age("S") < late:  # after the 5-minute mark, before the next poll
                time.sleep(0.1)
            send_document()
        if len(done) == 2:
            break
    assert len(packages) == len(received) == 2, (packages, received)
    assert sorted(parse(p).document_id for p in packages.values()) == sorted(received.values())
    first, second = sent_at.values()
    assert first < timedelta(seconds=30) and second > MARK, sent_at
    assert poll_ages[-1] - poll_ages[0] > MARK, poll_ages
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(poll_ages)]
    assert all(POLL_EVERY - 1 < gap < POLL_EVERY + 3 for gap in gaps), gaps

    # after the mark, through the same old objects: a 03 for each, seen by the sender
    for document_id in received.values():
        through("R", "sendEdoc", params(**{"from": receiver.code}, **STATUS),
                write(world, receiver.agency.status(sender.code, document_id, "03")))
    for doc_id in packages:
        lines = poll(lambda doc_id=doc_id: through("S", "getSentEdocList",
                                                   params(**EDOC, docId=doc_id)),
                     lambda c: any(line.get("receiveStatus") == "03"
                                   for line in c.field("statusResult") or ()))
        (line,) = lines.field("statusResult")
        assert (line["senderDocId"], line["fromCode"], line["toCode"],
                line["receiveStatus"]) == (doc_id, sender.code, receiver.code, "03"), \
            lines.describe()
        assert line["receiverDocId"] in received, lines.describe()

    last = {obj: (op, when) for obj, op, when in calls}
    assert set(last) == {"S", "R"}
    for obj, (op, when) in last.items():
        assert when > MARK, f"{obj}'s last call ({op}) at {when} of age, not past {MARK}"
    after_mark = {(obj, op) for obj, op, when in calls if when > MARK}
    assert after_mark >= {("S", "sendEdoc"), ("S", "getSentEdocList"),
                          ("R", "getReceivedEdocList"), ("R", "getEdoc"),
                          ("R", "updateStatus"), ("R", "sendEdoc")}, after_mark


# --------------------------------------------------------------------------- refusals


def schema_invalid(agency: Agency, to: str) -> bytes:
    """Signed by the agency, but with an element no edXML schema has."""
    package = model.DocumentPackage(
        sender=model.Organization(agency.code), recipients=(model.Organization(to),),
        document_id=f"{agency.code},2026/11/22,{uuid.uuid4().hex[:8]}/SCHEMA",
        code=model.Code("1", "TEST"),
        promulgation=model.PromulgationInfo("Hà Nội", datetime(2026, 11, 22).date()),
        document_type=model.DocumentType(1, "Công văn"), subject="Sai lược đồ",
        signer=model.SignerInfo("Nguyễn Văn A"))
    data = build(package).replace(b"<edXML:Subject>",
                                  b"<edXML:NotAnEdxmlElement>x</edXML:NotAnEdxmlElement>"
                                  b"<edXML:Subject>", 1)
    return agency.signer.sign(data)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("version", SDK_VERSIONS)
def test_every_refusal_reaches_the_caller_as_a_result_with_the_hubs_code(
        world, jvm, version, zone):
    """Each operation's failure paths: the SDK's caller gets a result object whose
    status is FAIL and whose ErrorCode is the hub's, and the SDK neither throws nor
    swallows an exception (a swallowed NullPointerException leaves every field null:
    sendEdoc reads DocId from every answer, and 2.0.0's getEdoc reads data from a failed
    one)."""
    sdk = jvm(version, zone)
    sender, receiver = new_pair(world)
    good = configure(sdk, world, sender)
    wrong_secret = configure(sdk, world, sender, name="wrong-secret", secret="not-the-secret")
    nobody = configure(sdk, world, sender, name="nobody",
                       system_id=f"nobody.{uuid.uuid4().hex[:8]}")
    S, R = sender.agency, receiver.agency
    signed = S.document(R.code)
    tampered = signed.replace(b"Th\xe1\xbb\xad nghi\xe1\xbb\x87m", b"Gi\xe1\xba\xa3 m\xe1\xba\xa1o")
    assert tampered != signed
    send_params = params(**{"from": S.code}, **EDOC)
    unknown = str(uuid.uuid4())
    get_unknown = params(filePath=store(world, sdk), docId=unknown)

    cases: list[tuple[str, str, tuple[str, ...], str, object]] = [
        # (what, op, args, config, expected ErrorCode or predicate)
        ("bad secret", "getAgenciesList", ("{}",), wrong_secret, "gateway.bad_signature"),
        ("unknown system", "getAgenciesList", ("{}",), nobody, "gateway.unknown_system"),
        ("bad secret", "sendEdoc", (send_params, write(world, signed)), wrong_secret,
         "gateway.bad_signature"),
        ("unknown system", "sendEdoc", (send_params, write(world, signed)), nobody,
         "gateway.unknown_system"),
        ("tampered signature", "sendEdoc", (send_params, write(world, tampered)), good,
         "signature.digest_mismatch"),
        ("schema-invalid", "sendEdoc", (send_params, write(world, schema_invalid(S, R.code))),
         good, "envelope.schema"),
        ("not XML", "sendEdoc", (send_params, write(world, b"not xml at all")), good,
         "envelope.not_xml"),
        ("another system's node", "sendEdoc",
         (params(**{"from": R.code}, **EDOC), write(world, R.document(S.code))), good,
         "gateway.not_your_node"),
        ("a document sent as a status", "sendEdoc",
         (params(**{"from": S.code}, **STATUS), write(world, signed)), good,
         "gateway.bad_request"),
        ("an unregistered recipient", "sendEdoc",
         (send_params, write(world, S.document(f"H99.T{uuid.uuid4().hex[:8].upper()}"))), good,
         "routing.unknown_recipient"),
        ("a status about a document it never received", "sendEdoc",
         (params(**{"from": S.code}, **STATUS), write(world, S.status(
             R.code, f"{R.code},2026/11/22,{uuid.uuid4().hex[:6]}/NONE", "03"))), good,
         lambda code: code in ("routing.unknown_document", "routing.not_allowed")),
        ("bad secret", "getReceivedEdocList", (params(**EDOC),), wrong_secret,
         "gateway.bad_signature"),
        ("unknown system", "getReceivedEdocList", (params(**EDOC),), nobody,
         "gateway.unknown_system"),
        ("bad messagetype", "getReceivedEdocList",
         (params(servicetype="eDoc", messagetype="memo"),), good, "gateway.bad_request"),
        ("unknown docId", "getEdoc", (get_unknown,), good,
         "gateway.unknown_document"),
        ("bad secret", "getEdoc", (get_unknown,), wrong_secret,
         "gateway.bad_signature"),
        ("unknown system", "getEdoc", (get_unknown,), nobody,
         "gateway.unknown_system"),
        ("unknown docId", "updateStatus", (params(status="done", docId=unknown),), good,
         "gateway.unknown_document"),
        ("unknown docId", "updateStatus", (params(status="fail", docId=unknown),), good,
         "gateway.unknown_document"),
        ("bad status value", "updateStatus", (params(status="gone", docId=unknown),), good,
         "gateway.bad_request"),
        ("bad secret", "updateStatus", (params(status="done", docId=unknown),), wrong_secret,
         "gateway.bad_signature"),
        ("unknown system", "updateStatus", (params(status="done", docId=unknown),), nobody,
         "gateway.unknown_system"),
        ("bad secret", "getSentEdocList", (params(**EDOC, docId=""),), wrong_secret,
         "gateway.bad_signature"),
        ("unknown system", "getSentEdocList", (params(**EDOC, docId=""),), nobody,
         "gateway.unknown_system"),
        ("bad messagetype", "getSentEdocList",
         (params(servicetype="eDoc", messagetype="memo", docId=""),), good,
         "gateway.bad_request"),
    ]
    if sdk.ready["has_count"]:  # 2.0.1 only: 2.0.0 has no count operations
        for op in ("countReceiveEdoc", "countReceiveStatus"):
            cases += [("bad secret", op, ("{}",), wrong_secret, "gateway.bad_signature"),
                      ("unknown system", op, ("{}",), nobody, "gateway.unknown_system")]
    else:
        missing = sdk.call("countReceiveEdoc", "{}", config=good)
        assert missing.reply.get("missing_in_sdk"), missing.describe()

    problems = []
    for what, op, args, config, expected in cases:
        call = sdk.call(op, *args, config=config)
        try:
            expect_refused(call, expected)
        except AssertionError as exc:
            problems.append(f"{op} ({what}): {exc}")
    # the success path still works alongside (nothing above left a trace)
    try:
        expect_ok(sdk.call("getReceivedEdocList", params(**EDOC), config=good))
    except AssertionError as exc:
        problems.append(f"getReceivedEdocList (success path): {exc}")
    assert not problems, f"{len(problems)} of {len(cases)} refusals:\n\n" + \
        "\n\n".join(problems)
