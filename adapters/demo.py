"""``vdx demo``: a real exchange on embedded defaults, in a throw-away workspace.

Needs only a running RabbitMQ with its management plugin. It creates a workspace (SQLite
database, TEST development PKI) and a broker vhost of its own, registers three agencies,
starts the hub, and shows:

- 000.00.00.G22 sending a signed document with an attachment to two agencies through the
  Python SDK, and getting ``accepted`` and ``delivered`` receipts;
- 000.00.00.H41 reading it through the VXP-compatible gateway (real HTTP, the SDK's wire
  format) and answering 03 through it (the gateway signs for that software);
- 000.00.00.H49 receiving it through the folder bridge (status 01 goes back by itself)
  and answering 06 by dropping a signed file in its outbox;
- the statuses 01, 03 and 06 reaching G22; a tampered package refused with its reason;
- the receipts table and a passing ledger audit.

Each step reports through ``say``. Everything is stopped and removed at the end (the
vhost, the agencies' broker accounts, the workspace) unless ``keep`` is set.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

from vdx import store
from vdx.broker import provision
from vdx.core import model
from vdx.core.envelope import build
from vdx.core.ledger import make_hash_verifier
from vdx.errors import TransportError, VdxError
from vdx.hub import audit
from vdx.registry.admin import Admin, HubConfig
from vdx.xmldsig import pki
from vdx.xmldsig.sign import Signer

SENDER, VIA_GATEWAY, VIA_FOLDER = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49"
NAMES = {SENDER: "Văn phòng Chính phủ", VIA_GATEWAY: "UBND tỉnh Nghệ An",
         VIA_FOLDER: "UBND tỉnh Hà Tĩnh"}
Say = Callable[[str, str], None]


@dataclass
class DemoResult:
    workspace: Path
    steps: list[tuple[str, bool]] = field(default_factory=list)
    receipts: list[audit.ReceiptView] = field(default_factory=list)
    vhost: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(ok for _, ok in self.steps)


class DemoFailed(Exception):
    """A step did not go as it should; the message says which and why."""


def run(say: Say, workspace: Path | None = None, *, keep: bool = False) -> DemoResult:
    ws = workspace or Path(tempfile.mkdtemp(prefix="vdx-demo-"))
    result = DemoResult(ws)

    def step(name: str, ok: bool, detail: str) -> None:
        result.steps.append((name, ok))
        say(name, detail)
        if not ok:
            raise DemoFailed(f"{name}: {detail}")

    with ExitStack() as stack:
        world = stack.enter_context(_world(ws, keep=keep))
        result.vhost = world.vhost
        step("setup", True, f"workspace {ws}, broker vhost {world.vhost}")
        _exchange(world, step, stack, result)
    return result


def console_commands(result: DemoResult) -> list[str]:
    """The shell commands that open the web console on a kept workspace: its
    environment, an admin account, and the server (a broker password other than the
    default ``guest`` is not printed: put it back in ``VDX_AMQP_URL``)."""
    from urllib.parse import urlsplit, urlunsplit

    from vdx.broker.channel import DEFAULT_AMQP_URL, addresses

    ws = result.workspace
    amqp = urlsplit(addresses(os.environ.get("VDX_AMQP_URL") or DEFAULT_AMQP_URL)[0])
    netloc = amqp.netloc
    if amqp.password and amqp.password != "guest":
        netloc = netloc.replace(f":{amqp.password}@", ":PASSWORD@", 1)
    url = urlunsplit((amqp.scheme, netloc, "/" + quote(result.vhost, safe=""), "", ""))
    return [
        f"export VDX_HOME={ws} VDX_DATABASE_URL=sqlite:///{ws / 'vdx.db'} "
        f"VDX_PKI_DIR={ws / 'pki'} VDX_TRUST_DIR={ws / 'pki'} VDX_AMQP_URL='{url}'",
        "vdx console add-user admin --role admin",
        "vdx console run --port 8090    # then open http://127.0.0.1:8090/",
    ]


# ------------------------------------------------------------------------ the world


@dataclass
class _World:
    ws: Path
    vhost: str
    admin: Admin
    signers: dict[str, Signer] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> HubConfig:
        return self.admin.config


@contextmanager
def _world(ws: Path, *, keep: bool) -> Iterator[_World]:
    vhost = f"vdx-demo-{uuid.uuid4().hex[:8]}"
    env = {"VDX_HOME": str(ws), "VDX_DATABASE_URL": f"sqlite:///{ws / 'vdx.db'}",
           "VDX_PKI_DIR": str(ws / "pki"), "VDX_TRUST_DIR": str(ws / "pki"),
           "VDX_ACTOR": "vdx-demo"}
    base = provision.BrokerSettings.from_env()
    broker = replace(base, vhost=vhost)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    config = replace(HubConfig.from_env(), broker=broker)
    admin = Admin(config)
    created = False
    try:
        _require_management(admin)
        created = True
        yield _World(ws, vhost, admin)
    finally:
        if created and not keep:
            _remove_accounts(admin, vhost)
        admin.engine.dispose()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if not keep:
            import shutil

            shutil.rmtree(ws, ignore_errors=True)


def _require_management(admin: Admin) -> None:
    """The demo provisions its agencies through the management API: say so if it is off.

    Its accounts are named after its own vhost (``CODE@vdx-demo-…``), so a real hub's on
    the same broker are never touched."""
    try:
        admin.api.request("GET", "overview")
    except TransportError as exc:
        raise DemoFailed(f"{exc.message}. The demo needs RabbitMQ with its management plugin "
                         f"(rabbitmq-plugins enable rabbitmq_management).") from exc


def _remove_accounts(admin: Admin, vhost: str) -> None:
    api = admin.api
    try:
        for perm in api.get(f"vhosts/{quote(vhost, safe='')}/permissions") or ():
            user = perm["user"]
            if user != admin.config.broker.user and not provision.other_vhosts(api, vhost, user):
                api.delete(f"users/{quote(user, safe='')}")
        api.delete(f"vhosts/{quote(vhost, safe='')}")
    except (TransportError, OSError):
        pass  # best effort: the vhost name is unique, nothing else depends on it


# ------------------------------------------------------------------------ the story


def _exchange(w: _World, step, stack: ExitStack, result: DemoResult) -> None:
    from vdx.client.node import NodeClient
    from vdx.xmldsig.trust import TrustStore

    report = w.admin.init()
    step("init", True, f"database at revision {report.revision}, TEST national root CA, "
                       f"hub certificate, topology in vhost {w.vhost}")
    for code, name in NAMES.items():
        issued = pki.issue_agency(w.config.pki_dir, code, name, ec_key=True)
        _node, credentials = w.admin.register(code, name, issued.cert_path.read_bytes())
        w.signers[code] = Signer.from_files(issued.key_path, issued.cert_path)
        w.urls[code] = credentials.amqp_url
    step("register", True, ", ".join(f"{c} {n}" for c, n in NAMES.items()))

    hub = stack.enter_context(_running_hub(w))
    step("hub", True, f"worker running (hub id {hub})")
    trust = TrustStore.from_dir(w.config.trust_dir)
    hub_cert = w.admin.hub_certificate()
    gateway_url, system = stack.enter_context(_running_gateway(w))
    step("gateway", True, f"VXP gateway on {gateway_url}, system {system.system_id} "
                          f"for {VIA_GATEWAY}")

    g22 = stack.enter_context(NodeClient(w.urls[SENDER], SENDER, signer=w.signers[SENDER],
                                         trust=trust, hub_certificate=hub_cert))
    attachment = w.ws / "quyet-dinh-12.pdf"
    attachment.write_bytes(b"%PDF-1.7\n% Quyet dinh 12/QD-TTg (demo)\n")
    document = _document(model.Attachment.from_file(attachment))
    submission = g22.send(document)
    receipt = g22.wait_for_receipt(submission, timeout=30)
    step("send", receipt.kind == "accepted",
         f"{SENDER} → {VIA_GATEWAY}, {VIA_FOLDER} through the SDK: {document.document_id} "
         f"with {attachment.name}: receipt {receipt.kind}")

    h41_doc = _gateway_pickup(gateway_url, system)
    step("gateway", h41_doc is not None,
         f"{VIA_GATEWAY}'s software listed, fetched and acknowledged it over VXP")
    answer = _gateway_status(gateway_url, system, document, "03")
    step("gateway", answer.get("status") == "OK",
         f"{VIA_GATEWAY} answered 03 (accepted) through sendEdoc; the gateway signed it")

    folder = w.ws / "h49-folder"
    bridge = _bridge(w, folder, trust, hub_cert)
    bridge.run(once=True)
    inbox = sorted((folder / "inbox").glob("*"))
    step("folder", len(inbox) == 1,
         f"{VIA_FOLDER}'s bridge wrote {inbox[0].name if inbox else 'nothing'} to inbox/ "
         f"and sent 01 (arrived) by itself")
    status = w.signers[VIA_FOLDER].sign(build(_status(document, VIA_FOLDER, "06")))
    (folder / "outbox" / "status-06.edxml").write_bytes(status)
    summary = _bridge(w, folder, trust, hub_cert).run(once=True)
    step("folder", summary.sent == 1, f"{VIA_FOLDER} dropped a signed 06 (finished) in "
                                      f"outbox/: {summary.line()}")

    codes = _collect_statuses(g22, {"01", "03", "06"}, timeout=30)
    step("statuses", {"01", "03", "06"} <= codes,
         f"{SENDER} received statuses {', '.join(sorted(codes))}, each verified end to end")

    signed = w.signers[SENDER].sign(build(replace(
        document, document_id=document.document_id + "-2", attachments=())))
    tampered = signed.replace("Quy chế".encode(), "Quy chê".encode(), 1)  # one word changed
    refused = g22.wait_for_receipt(g22.send(tampered), timeout=30)
    step("tamper", refused.kind == "rejected" and refused.error_code is not None,
         f"a package changed after signing was refused: {refused.error_code}"
         + (f" ({refused.rejection.message_en})" if refused.rejection else ""))

    sessions = store.session_factory(w.admin.engine)
    with sessions() as session:
        result.receipts = audit.query_receipts(session)
        report = audit.verify_ledger(session, make_hash_verifier(hub_cert))
    step("receipts", len(result.receipts) > 0, f"{len(result.receipts)} signed receipts")
    step("audit", report.intact, f"ledger intact: {report.entries} entries, every hash link "
                                 f"and hub signature checks")


def _document(attachment: model.Attachment) -> model.DocumentPackage:
    today = date.today()
    return model.DocumentPackage(
        sender=model.Organization(SENDER, organ_name=NAMES[SENDER]),
        recipients=(model.Organization(VIA_GATEWAY, organ_name=NAMES[VIA_GATEWAY]),
                    model.Organization(VIA_FOLDER, organ_name=NAMES[VIA_FOLDER])),
        document_id=f"{SENDER},{today:%Y/%m/%d},{uuid.uuid4().int % 10000}/QĐ-TTg",
        code=model.Code("12", "QĐ-TTg"),
        promulgation=model.PromulgationInfo("Hà Nội", today),
        document_type=model.DocumentType(2, "Quyết định"),
        subject="Ban hành Quy chế liên thông văn bản điện tử",
        signer=model.SignerInfo("Nguyễn Văn A", "KT. THỦ TƯỚNG", "Phó Thủ tướng"),
        trace=(model.TraceHeader(SENDER, _now()),),
        attachments=(attachment,),
    )


def _status(document: model.DocumentPackage, sender: str, code: str) -> model.StatusPackage:
    return model.StatusPackage(
        sender=model.Organization(sender, organ_name=NAMES[sender]),
        response_for=model.ResponseFor(SENDER, str(document.code), document.document_id,
                                       document.promulgation.date),
        staff=model.StaffInfo("Văn thư", "Trần Thị B"), status_code=code,
        description=model.STATUS_MEANINGS[code][0], timestamp=_now())


def _now() -> datetime:
    return datetime.now(model.VIETNAM_TZ).replace(microsecond=0)


@contextmanager
def _running_hub(w: _World) -> Iterator[str]:
    from vdx.hub.supervisor import load_services
    from vdx.hub.worker import HubWorker, WorkerConfig

    url = (f"amqp://{quote(w.config.broker.user, safe='')}:"
           f"{quote(w.config.broker.password, safe='')}@{w.config.broker.amqp_host}:"
           f"{w.config.broker.amqp_port}/{quote(w.vhost, safe='')}")
    worker = HubWorker(WorkerConfig(hub_id="vdx-demo-hub", amqp_url=url),
                       store.session_factory(w.admin.engine), load_services(w.config))
    thread = threading.Thread(target=worker.run_forever, name="vdx-hub", daemon=True)
    thread.start()
    try:
        yield "vdx-demo-hub"
    finally:
        worker.request_stop()
        thread.join(15)


@contextmanager
def _running_gateway(w: _World):
    import uvicorn
    from vdx_adapters.gateway import Gateway, create_app
    from vdx_adapters.gateway import systems as gateway_systems
    from vdx_adapters.gateway.run import config_from_env

    credentials = w.ws / "gateway-broker.json"
    signer_files = pki.CaDir(w.config.pki_dir)
    new = gateway_systems.add_system(
        w.admin, "DMS-NGHEAN", (VIA_GATEWAY,), credentials_file=credentials,
        sign_key=signer_files.agency_key(VIA_GATEWAY),
        sign_cert=signer_files.agency_cert(VIA_GATEWAY))
    config = replace(config_from_env(credentials_file=credentials), hub=w.config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(Gateway(config)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="vdx-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", _System(new.system.system_id, new.secret)
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass(frozen=True)
class _System:
    system_id: str
    secret: str


def _vxp(endpoint: str, system: _System, operation: str, params: dict, **kwargs) -> dict:
    from vdx_adapters.gateway import SdkService
    from vdx_adapters.gateway.sdk import send

    request = SdkService(system.system_id, system.secret).build(operation, params, **kwargs)
    return send(endpoint, request)


def _gateway_pickup(endpoint: str, system: _System) -> bytes | None:
    import base64

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = _vxp(endpoint, system, "getReceivedEdocList",
                      {"servicetype": "eDoc", "messagetype": "edoc"})
        for item in listed.get("data") or ():
            got = _vxp(endpoint, system, "getEdoc", {"docId": item["docId"], "filePath": "xml"})
            _vxp(endpoint, system, "updateStatus", {"docId": item["docId"], "status": "done"})
            return base64.b64decode(got["data"])
        time.sleep(0.2)
    return None


def _gateway_status(endpoint: str, system: _System, document: model.DocumentPackage,
                    code: str) -> dict:
    unsigned = build(_status(document, VIA_GATEWAY, code))  # the DMS cannot sign
    return _vxp(endpoint, system, "sendEdoc", {"from": VIA_GATEWAY, "servicetype": "eDoc",
                                               "messagetype": "status"}, file=unsigned)


def _bridge(w: _World, folder: Path, trust, hub_cert):
    from vdx_adapters.folder.bridge import BridgeConfig, FolderBridge

    return FolderBridge(BridgeConfig(VIA_FOLDER, folder, w.urls[VIA_FOLDER], trust,
                                     signer=w.signers[VIA_FOLDER], hub_certificate=hub_cert,
                                     wait=10.0),
                        report=lambda _line: None)


def _collect_statuses(client, wanted: set[str], timeout: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        for delivery in client.deliveries(timeout=1.0):
            if delivery.status_code:
                seen.add(delivery.status_code)
            if wanted <= seen:
                break
    return seen


__all__ = ["DemoFailed", "DemoResult", "VdxError", "run"]
