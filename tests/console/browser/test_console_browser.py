"""The console in a real browser (Debian's chromium, driven by Playwright): an auditor and
an admin at work, each page photographed into ``build/screenshots/``
(``VDX_README_SHOTS=1`` also refreshes the README's two, in ``docs/``).

The hub behind it is real (:func:`tests.console.conftest.traffic`: RabbitMQ, the hub
worker, SQLite); what is clicked is what a person would click.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import ROOT, require_service
from tests.console.conftest import ADMIN, AUDITOR, PASSWORD, attachment_traces

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

README_SHOTS = {"overview": "console-overview.png", "document": "console-timeline.png"}


def sign_in(page, url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/")
    assert "/login" in page.url  # no page without a session
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r"/$"))


def shoot(page, screenshots: Path, name: str) -> None:
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{name}: an empty screenshot"
    if name in README_SHOTS and os.environ.get("VDX_README_SHOTS") == "1":
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(path, docs / README_SHOTS[name])


def no_attachment_in(page) -> None:
    html = page.content().encode()
    for trace in attachment_traces():
        assert trace not in html, f"attachment content on {page.url}"


def xmlsec1_verifies(cert: Path, xml: Path) -> bool:
    done = subprocess.run(["xmlsec1", "--verify", "--enabled-key-data", "x509",
                           "--pubkey-cert-pem", str(cert), str(xml)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0


def test_an_auditor_finds_a_document_follows_its_timeline_and_reads_its_receipts(
        page, served, traffic, screenshots):
    sign_in(page, served, AUDITOR)
    assert page.locator("svg").count() >= 1  # the 30-day chart, drawn on the server
    shoot(page, screenshots, "overview")
    no_attachment_in(page)

    page.click("a[href='/documents']")
    page.fill("#search-form [name=document_id]", traffic.document_id)
    page.click("#search-submit")
    links = page.locator("a.document-link")
    assert links.count() == 1
    shoot(page, screenshots, "documents")
    links.first.click()
    page.wait_for_url(re.compile(r"/documents/.+"))
    assert traffic.document_id in page.content()
    timeline = page.locator("svg").first.inner_html()
    assert traffic.h41.code in timeline and traffic.h49.code in timeline  # a lane each
    shoot(page, screenshots, "document")
    no_attachment_in(page)

    page.locator("a.receipt-link").first.click()
    xml = page.inner_text("pre#receipt-xml")
    assert "<SignatureValue" in xml or "SignatureValue>" in xml
    shoot(page, screenshots, "receipt")


def test_an_admin_downloads_a_proof_that_checks_offline(page, served, traffic, screenshots,
                                                         tmp_path):
    if shutil.which("xmlsec1") is None:
        require_service("xmlsec1", "apt-get install xmlsec1")
    sign_in(page, served, ADMIN)
    page.goto(f"{served}/documents/{quote(traffic.document_id, safe='')}")
    with page.expect_download() as waiting:
        page.click("#proof-link")
    bundle = tmp_path / "proof.zip"
    waiting.value.save_as(bundle)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(tmp_path / "proof")
    proof = tmp_path / "proof"
    (package,) = proof.glob("package-*-document.edxml")
    assert xmlsec1_verifies(proof / "certs" / "sender.pem", package)
    receipts = sorted((proof / "receipts").glob("*.xml"))
    assert len(receipts) >= 4
    for receipt in receipts:
        assert xmlsec1_verifies(proof / "certs" / "hub.pem", receipt), receipt.name
    # Edited, a receipt no longer verifies: the check above could fail.
    edited = tmp_path / "edited.xml"
    original = receipts[0].read_bytes()
    edited.write_bytes(original.replace(traffic.g22.code.encode(), b"G99.X", 1))
    assert edited.read_bytes() != original
    assert not xmlsec1_verifies(proof / "certs" / "hub.pem", edited)


def refusal_count(page, served, code: str) -> int:
    page.goto(f"{served}/refusals")
    row = page.locator(f"tr[data-code='{code}']")
    if row.count() == 0:
        return 0
    return int(row.first.get_attribute("data-count"))


def test_a_refused_package_moves_the_refusal_count(page, served, traffic, screenshots):
    sign_in(page, served, AUDITOR)
    code = "signature.digest_mismatch"
    before = refusal_count(page, served, code)
    assert before >= 1
    g22, h41 = traffic.g22, traffic.h41
    signed = g22.document(h41.code)
    g22.send(signed.replace("Thử nghiệm trục".encode(), "Đã sửa đổi".encode(), 1))
    (rejected,) = g22.inbox(1)
    assert rejected.receipt.error_code == code
    page.reload()
    assert refusal_count(page, served, code) == before + 1
    shoot(page, screenshots, "refusals")
    text = page.locator(f"tr[data-code='{code}']").first.inner_text()
    assert re.search(r"[ăâđêôơưạảấầẩẫậ]", text), "the Vietnamese text of the code"


def test_an_admin_suspends_a_node_and_an_auditor_is_refused(browser, served, traffic,
                                                            screenshots):
    code = traffic.h49.code
    admin = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(admin, served, ADMIN)
    admin.goto(f"{served}/agencies")
    shoot(admin, screenshots, "agencies")
    admin.goto(f"{served}/agencies/{code}")
    admin.click("#suspend-button")
    admin.wait_for_selector("#flash")
    assert admin.get_attribute("#node-status", "data-status") == "suspended"
    actions = admin.locator("tr.log-entry[data-action='suspend'] td.actor").all_inner_texts()
    assert f"console:{ADMIN}" in actions
    shoot(admin, screenshots, "agency")

    auditor = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(auditor, served, AUDITOR)
    auditor.goto(f"{served}/agencies/{code}")
    assert auditor.locator("#resume-button").count() == 0  # no admin buttons for auditors
    # Forged from the auditor's own page (valid session and CSRF token): still refused.
    status = auditor.evaluate("""async (code) => {
        const csrf = document.querySelector("input[name=csrf]").value;
        const answer = await fetch(`/agencies/${code}/resume`, {method: "POST",
            headers: {"Content-Type": "application/x-www-form-urlencoded"},
            body: new URLSearchParams({csrf})});
        return answer.status;
    }""", code)
    assert status == 403
    admin.reload()
    assert admin.get_attribute("#node-status", "data-status") == "suspended"
    denied = admin.locator("tr.log-entry[data-action='denied'] td.actor").all_inner_texts()
    assert f"console:{AUDITOR}" in denied

    admin.click("#resume-button")
    admin.wait_for_selector("#flash")
    assert admin.get_attribute("#node-status", "data-status") == "active"
    admin.context.close()
    auditor.context.close()


def test_the_ledger_page_verifies_in_english_too(page, served, screenshots):
    sign_in(page, served, AUDITOR)
    page.goto(f"{served}/ledger")
    page.click("#verify-button")
    page.wait_for_selector("#ledger-result")
    assert page.get_attribute("#ledger-result", "data-intact") == "true"
    vietnamese = page.inner_text("body")
    page.click("#lang-switch")
    page.wait_for_load_state()
    english = page.inner_text("body")
    assert english != vietnamese and "Ledger" in english
    shoot(page, screenshots, "ledger")
