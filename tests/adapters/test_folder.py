"""The folder bridge (vdx_adapters.folder, `vdx folder run`) through the real hub and broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from vdx_adapters.folder.bridge import FOLDERS, BridgeConfig, FolderBridge
from vdx_cli.cli import main

from tests.support.hostile import corpus
from tests.support.hub import Agency, Hub, running_hub
from vdx import build
from vdx import parse as parse_package
from vdx.core import model
from vdx.core.receipts import parse_receipt

_counter = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub("sqlite", tmp_path_factory.mktemp("folder"), agencies=()) as h:
        yield h


def pair(hub: Hub) -> tuple[Agency, Agency]:
    n = next(_counter)
    return hub.add_agency(f"F{n:02d}"), hub.add_agency(f"T{n:02d}")


def bridge(hub: Hub, agency: Agency, root: Path, lines: list[str] | None = None,
           **options) -> FolderBridge:
    config = BridgeConfig(agency.code, root, agency.amqp_url, hub.pki.trust,
                          signer=agency.signer, hub_certificate=hub.admin.hub_certificate(),
                          poll=0.2, wait=15.0, **options)
    return FolderBridge(config, report=(lines.append if lines is not None else lambda _: None))


def run_until(make: Callable[[], FolderBridge], done: Callable[[], bool],
              timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the bridge did not get there in time"
        make().run(once=True)


def files(directory: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in directory.glob(pattern)) if directory.is_dir() else []


def unsigned(agency: Agency, *to: str) -> bytes:
    """A valid package from ``agency`` that nobody signed (the bridge will)."""
    return build(model.DocumentPackage(
        sender=model.Organization(agency.code),
        recipients=tuple(model.Organization(t) for t in to),
        document_id=f"{agency.code},2026/11/22,{next(_counter)}/DIR", code=model.Code("9", "DIR"),
        promulgation=model.PromulgationInfo("Hà Nội", date(2026, 11, 22)),
        document_type=model.DocumentType(1, "Công văn"), subject="Gửi qua thư mục",
        signer=model.SignerInfo("Trần Thị B")))


def test_packages_go_out_and_come_in_through_folders(hub, tmp_path):
    a, b = pair(hub)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    outbox = a_dir / "outbox"
    outbox.mkdir(parents=True)
    good = a.document(b.code)
    (outbox / "good.xml").write_bytes(good)
    (outbox / "unsigned.xml").write_bytes(unsigned(a, b.code))  # the bridge signs it
    (outbox / "tampered.xml").write_bytes(
        a.document(b.code).replace("Thử nghiệm trục".encode(), "Đã bị sửa".encode()))
    (outbox / "junk.xml").write_bytes(b"this is not XML")
    (outbox / "stolen.xml").write_bytes(b.document(a.code))  # B's package, not A's
    (outbox / ".being-written.xml").write_bytes(b"<half")  # ignored: not finished yet
    lines: list[str] = []

    summary = bridge(hub, a, a_dir, lines).run(once=True)

    assert (summary.sent, summary.failed, summary.waiting) == (2, 3, 0)
    assert files(outbox) == [".being-written.xml"]
    assert files(a_dir / "sent") == ["good.xml", "unsigned.xml"]
    assert (a_dir / "sent" / "good.xml").read_bytes() == good  # moved as dropped
    assert files(a_dir / "failed") == [
        "junk.xml", "junk.xml.error.json", "stolen.xml", "stolen.xml.error.json",
        "tampered.xml", "tampered.xml.error.json"]
    why = {name: json.loads((a_dir / "failed" / f"{name}.error.json").read_text())
           for name in ("junk.xml", "stolen.xml", "tampered.xml")}
    assert (why["junk.xml"]["stage"], why["junk.xml"]["code"]) == ("local", "envelope.not_xml")
    assert why["stolen.xml"]["code"] == "routing.sender_mismatch"
    assert (why["tampered.xml"]["stage"], why["tampered.xml"]["code"]) == \
        ("hub", "signature.digest_mismatch")
    assert why["tampered.xml"]["message_vi"]
    assert why["tampered.xml"]["signed_by_bridge"] is False  # it came signed
    assert (a_dir / why["tampered.xml"]["receipt_file"]).is_file()
    kinds = [parse_receipt(p.read_bytes()).kind for p in (a_dir / "receipts").iterdir()]
    assert kinds.count("accepted") == 2 and kinds.count("rejected") == 1
    assert any(line.startswith("failed   tampered.xml") for line in lines)

    # B's bridge writes both documents to its inbox, and answers each with status 01
    run_until(lambda: bridge(hub, b, b_dir), lambda: len(files(b_dir / "inbox")) == 2)
    inbox = files(b_dir / "inbox")
    assert all(name.startswith(f"document-{a.code}-") for name in inbox)
    assert good in {(b_dir / "inbox" / name).read_bytes() for name in inbox}
    assert files(b_dir / ".vdx" / "tmp") == []
    run_until(lambda: bridge(hub, a, a_dir), lambda: len(files(a_dir / "inbox")) == 2)
    assert all(name.startswith(f"status-{b.code}-") for name in files(a_dir / "inbox"))


def test_a_legacy_package_is_signed_in_place_of_its_placeholder(hub, tmp_path):
    """What EdXML102 writes (placeholder Signature, ToPlaces last, the manifest's own
    ContentType) goes out signed by the bridge, and its record says so."""
    from tests.support.quirks import G22, H41, addressed

    a, b = pair(hub)
    codes = {G22: a.code, H41: b.code}
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    (a_dir / "outbox").mkdir(parents=True)
    legacy = addressed("placeholder_signature.xml", codes, f"{a.code},2026/11/01,1/LEGACY")
    (a_dir / "outbox" / "legacy.xml").write_bytes(legacy)
    lines: list[str] = []
    summary = bridge(hub, a, a_dir, lines).run(once=True)
    assert (summary.sent, summary.failed) == (1, 0), lines
    assert any(line.startswith("sent     legacy.xml") and "signed by the bridge" in line
               for line in lines), lines
    run_until(lambda: bridge(hub, b, b_dir), lambda: len(files(b_dir / "inbox")) == 1)
    (name,) = files(b_dir / "inbox")
    received = (b_dir / "inbox" / name).read_bytes()
    assert b"<ds:Signature" in received and b"<Signature>" not in received
    assert parse_package(received) == parse_package(legacy)

    # Without the node's key, the bridge says why it cannot send it, with its own code.
    c_dir = tmp_path / "c"
    (c_dir / "outbox").mkdir(parents=True)
    (c_dir / "outbox" / "legacy.xml").write_bytes(
        addressed("placeholder_signature.xml", codes, f"{a.code},2026/11/01,2/LEGACY"))
    config = BridgeConfig(a.code, c_dir, a.amqp_url, hub.pki.trust,
                          hub_certificate=hub.admin.hub_certificate(), poll=0.2, wait=5.0)
    assert FolderBridge(config, report=lambda _: None).run(once=True).failed == 1
    why = json.loads((c_dir / "failed" / "legacy.xml.error.json").read_text())
    assert (why["stage"], why["code"]) == ("local", "signature.placeholder")


def test_the_cli_refuses_bad_settings_in_one_line(hub, tmp_path):
    a, _ = pair(hub)
    runner = CliRunner()
    base = ["folder", "run", "--node", a.code, "--dir", str(tmp_path / "d")]
    no_trust = runner.invoke(main, [*base, "--amqp-url", a.amqp_url], env={"VDX_TRUST_DIR": ""})
    assert no_trust.exit_code == 2 and "--trust" in no_trust.output
    wrong_password = a.amqp_url.replace("@", "x@", 1)
    refused = runner.invoke(main, [*base, "--amqp-url", wrong_password, "--trust",
                                   str(hub.pki.path), "--once"])
    assert refused.exit_code == 1
    assert "transport.unavailable" in refused.output and "Traceback" not in refused.output
    other = runner.invoke(main, [*base, "--amqp-url", a.amqp_url.replace(a.code, "X", 1),
                                 "--trust", str(hub.pki.path), "--once"])
    assert other.exit_code == 1 and "not as node" in other.output


def _write_keys(agency: Agency, directory: Path) -> tuple[Path, Path]:
    key = directory / f"{agency.code}.key"
    key.write_bytes(agency.signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    cert = directory / f"{agency.code}.pem"
    cert.write_bytes(agency.signer.certificate.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.mark.slow
def test_killing_the_bridge_at_any_moment_loses_and_duplicates_nothing(hub, tmp_path):
    a, b = pair(hub)
    root = tmp_path / "a"
    (root / "outbox").mkdir(parents=True)
    n_out, n_in = 30, 15
    for i in range(n_out):
        (root / "outbox" / f"doc-{i:03d}.xml").write_bytes(a.document(b.code))
    for _ in range(n_in):
        b.send(b.document(a.code))
    key, cert = _write_keys(a, tmp_path)
    command = [sys.executable, "-m", "vdx_cli.cli", "folder", "run", "--node", a.code,
               "--dir", str(root), "--key", str(key), "--cert", str(cert),
               "--trust", str(hub.pki.path), "--poll", "0.2"]
    # faulthandler: should the process die in C code, its threads' stacks say where.
    env = os.environ | {"VDX_NODE_AMQP_URL": a.amqp_url, "PYTHONFAULTHANDLER": "1"}

    # Kill it without warning at different points of its work: while moving sent files
    # (twice), then while writing received ones.
    for folder, enough in (("sent", 1), ("sent", 12), ("inbox", 3)):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while (len(files(root / folder)) < enough and time.monotonic() < deadline
               and process.poll() is None):
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finish = subprocess.run([*command, "--once", "--wait", "20"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert finish.returncode == 0, finish.stderr

    assert files(root / "outbox") == []
    assert files(root / "failed") == []
    assert files(root / "sent") == [f"doc-{i:03d}.xml" for i in range(n_out)]
    inbox = files(root / "inbox")
    assert len(inbox) == n_in and all(n.startswith(f"document-{b.code}-") for n in inbox)
    receipts = [parse_receipt(p.read_bytes()) for p in (root / "receipts").iterdir()]
    accepted = [r for r in receipts if r.kind == "accepted" and r.status_code is None]
    assert len(accepted) == n_out and not [r for r in receipts if r.kind == "duplicate"]
    # B got each document once, and exactly one status 01 for each of its documents
    got = b.drain(settle=1.0)
    assert len([m for m in got if m.type == "edxml.document"]) == n_out
    arrived = [m.headers["x-vdx-document-id"] for m in got if m.type == "edxml.status"]
    assert len(arrived) == n_in == len(set(arrived))


def _serve(made: FolderBridge) -> threading.Thread:
    thread = threading.Thread(target=made.run, daemon=True)
    thread.start()
    return thread


def _wait_for(done: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the bridge did not get there in time"
        time.sleep(0.05)


def test_hostile_packages_fail_with_their_codes_and_the_bridge_keeps_running(hub, tmp_path):
    a, b = pair(hub)
    root = tmp_path / "a"
    outbox = root / "outbox"
    outbox.mkdir(parents=True)
    cases = corpus()
    for case in cases:
        (outbox / f"{case.name}.xml").write_bytes(case.data)
    running = bridge(hub, a, root, settle=0.0)
    thread = _serve(running)
    try:
        _wait_for(lambda: len(files(root / "failed", "*.error.json")) == len(cases))
        (outbox / "good.xml").write_bytes(a.document(b.code))  # dropped while it runs
        _wait_for(lambda: files(root / "sent") == ["good.xml"])
        assert thread.is_alive()
    finally:
        running.stop()
        thread.join(15)
    assert not thread.is_alive()
    for case in cases:
        why = json.loads((root / "failed" / f"{case.name}.xml.error.json").read_text())
        assert (why["stage"], why["code"]) == ("local", case.code), case.name
    assert files(outbox) == []


def test_a_symbolic_link_in_the_outbox_is_failed_without_being_read(hub, tmp_path):
    a, b = pair(hub)
    root = tmp_path / "a"
    outbox = root / "outbox"
    outbox.mkdir(parents=True)
    outside = tmp_path / "secret.xml"  # a valid package outside the folder
    outside.write_bytes(a.document(b.code))
    (outbox / "link.xml").symlink_to(outside)
    os.mkfifo(outbox / "pipe.xml")  # opening it to read would wait for a writer forever
    (outbox / "good.xml").write_bytes(a.document(b.code))

    summary = bridge(hub, a, root).run(once=True)

    assert (summary.sent, summary.failed) == (1, 2)
    assert files(root / "sent") == ["good.xml"]
    assert (root / "failed" / "link.xml").is_symlink()  # moved aside as it was
    assert outside.read_bytes() and outside.exists()
    for name, what in (("link.xml", "symbolic link"), ("pipe.xml", "not a regular file")):
        why = json.loads((root / "failed" / f"{name}.error.json").read_text())
        assert (why["stage"], why["code"]) == ("local", "folder.not_a_file")
        assert what in why["message"]
    assert b.drain() != [] and not [m for m in b.drain() if m.type == "edxml.document"]


def test_what_the_bridge_writes_is_its_owners_only(hub, tmp_path):
    a, b = pair(hub)
    root = tmp_path / "a"
    b.send(b.document(a.code))
    old = os.umask(0o022)  # the usual umask: without care files would be 0644
    try:
        run_until(lambda: bridge(hub, a, root), lambda: len(files(root / "inbox")) == 1)
    finally:
        os.umask(old)
    written = [*(root / "inbox").iterdir(), *(root / "receipts").iterdir(),
               *(root / ".vdx").glob("*.db")]
    assert {p.name for p in (root / ".vdx").glob("*.db")} == {"outbox.db", "client.db"}
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o600)}
    for directory in (root, *(root / name for name in (*FOLDERS, ".vdx", ".vdx/tmp"))):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
