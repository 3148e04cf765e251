"""The console's pages on a real hub: what they show, their CSV, the language switch, and
that no attachment content ever reaches a page."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import zipfile
from html import unescape
from urllib.parse import quote, urlsplit

from sqlalchemy import update

from tests.console.conftest import attachment_traces
from vdx.console import i18n
from vdx.hub import journal, reports
from vdx.store import session_factory


def rows(answer) -> list[dict[str, str]]:
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


def doc_path(traffic) -> str:
    return f"/documents/{quote(traffic.document_id, safe='')}"


def test_overview_counts_todays_traffic(auditor, traffic):
    page = auditor.get("/")
    assert page.status_code == 200
    assert "<svg" in page.text and 'class="s-accepted"' in page.text
    today = rows(auditor.get("/?format=csv"))[-1]
    # Two documents' worth: G22's document and H41's status accepted; the tampered
    # package refused; three deliveries (H41, H49, and the status back to G22).
    assert (today["accepted"], today["rejected"], today["delivered"]) == ("2", "1", "3")
    assert len(rows(auditor.get("/?format=csv"))) == 30
    assert 'id="pending"' in page.text and 'id="health"' in page.text
    assert "RabbitMQ" in page.text  # the broker answered


def test_overview_shows_the_last_verification(auditor, traffic):
    token = re.search(r'name="csrf" value="([^"]+)"', auditor.get("/ledger").text).group(1)
    assert auditor.post("/ledger/verify", data={"csrf": token}).status_code == 200
    page = auditor.get("/")
    section = page.text.split('id="last-check"')[1].split("</section>")[0]
    assert i18n.translator("vi")("intact") in section and "console:binh.auditor" in section


def test_search_documents(auditor, traffic):
    found = auditor.get("/documents", params={"document_id": traffic.document_id})
    assert unescape(found.text).count(traffic.document_id) >= 1
    assert 'class="document-link"' in found.text
    by_recipient = rows(auditor.get("/documents", params={"recipient": traffic.h49.code,
                                                          "format": "csv"}))
    assert [r["document_id"] for r in by_recipient] == [traffic.document_id]
    assert by_recipient[0]["recipients"].split() == sorted([traffic.h41.code, traffic.h49.code])
    by_status = rows(auditor.get("/documents?status=03&format=csv"))
    assert [r["document_id"] for r in by_status] == [traffic.document_id]
    assert rows(auditor.get("/documents?status=06&format=csv")) == []
    assert rows(auditor.get(f"/documents?sender={traffic.h41.code}&format=csv")) == []
    assert rows(auditor.get("/documents?until=2020-01-01&format=csv")) == []
    assert len(rows(auditor.get("/documents?since=2020-01-01&format=csv"))) == 1
    assert auditor.get("/documents?since=yesterday").status_code == 400


def test_a_documents_timeline(auditor, traffic):
    page = auditor.get(doc_path(traffic))
    assert page.status_code == 200
    svg = page.text.split('<svg')[1].split('</svg>')[0]
    for code in (traffic.g22.code, traffic.h41.code, traffic.h49.code):
        assert f">{code}</text>" in svg  # a lane each
    assert 'class="s-status"' in svg and 'class="s-delivered"' in svg
    events = rows(auditor.get(doc_path(traffic) + "?format=csv"))
    assert [e["event"] for e in events][:2] == ["submitted", "accepted"]
    assert "status 03" in [e["event"] for e in events]
    assert auditor.get("/documents/no-such-document").status_code == 404


def test_a_receipt_is_shown_as_escaped_text(auditor, traffic):
    page = auditor.get(doc_path(traffic))
    link = re.search(r'class="receipt-link" href="([^"]+)"', page.text).group(1)
    shown = auditor.get(link)
    assert shown.status_code == 200
    xml = shown.text.split('<pre id="receipt-xml">')[1].split("</pre>")[0]
    assert "<" not in xml and "&lt;" in xml and "Signature" in xml
    assert auditor.get("/receipts/not-a-receipt").status_code == 404


def proof_of(client, traffic) -> tuple[set[str], dict, str]:
    link = re.search(r'id="proof-link"[^>]*href="([^"]+)"', client.get(doc_path(traffic)).text)
    answer = client.get(unescape(link.group(1)))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    assert "attachment" in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        return (set(bundle.namelist()), json.loads(bundle.read("manifest.json")),
                bundle.read("VERIFY.txt").decode())


def test_an_admins_proof_bundle_is_the_exports(admin, traffic):
    names, manifest, _ = proof_of(admin, traffic)
    assert {"certs/hub.pem", "certs/sender.pem", "certs/root.pem", "VERIFY.txt"} <= names
    assert manifest["document_id"] == traffic.document_id
    assert len([n for n in names if n.startswith("receipts/")]) == 5
    assert any(n.startswith("package-") for n in names)
    assert admin.get("/proof/no-such-document").status_code == 404


def test_an_auditors_proof_bundle_leaves_the_package_out(auditor, traffic):
    names, manifest, how = proof_of(auditor, traffic)
    assert not any(n.startswith("package-") for n in names), names  # no document content
    assert len([n for n in names if n.startswith("receipts/")]) == 5
    assert {p["sha256"] for p in manifest["packages"]}  # what the package is, by its hash
    assert "withheld" in how
    assert auditor.get("/proof/no-such-document").status_code == 404


def test_refusals_by_code_with_both_languages(auditor, traffic):
    page = auditor.get("/refusals")
    row = re.search(r'<tr data-code="signature\.digest_mismatch"[^>]*>(.*?)</tr>', page.text, re.S)
    assert row, "the tampered package's code is listed"
    spec = i18n.CATALOGUE["signature.digest_mismatch"]
    assert spec.vi in unescape(row.group(1)) and spec.en in unescape(row.group(1))
    per_day = rows(auditor.get("/refusals?format=csv"))
    assert [(r["code"], r["count"]) for r in per_day] == [("signature.digest_mismatch", "1")]
    assert per_day[0]["meaning_en"] == spec.en
    packages = rows(auditor.get("/refusals?format=csv&table=packages"))
    assert [(p["sender"], p["document_id"], p["code"]) for p in packages] == [
        (traffic.g22.code, traffic.refused_document_id, "signature.digest_mismatch")]
    assert set(packages[0]) == {"at", "sender", "document_id", "code"}
    assert rows(auditor.get("/refusals?format=csv&table=packages&code=envelope.empty")) == []


def test_agencies_with_volumes(auditor, traffic):
    table = {r["code"]: r for r in rows(auditor.get("/agencies?format=csv"))}
    assert (table[traffic.g22.code]["sent"], table[traffic.g22.code]["refused"]) == ("1", "1")
    assert table[traffic.h41.code]["received"] == "1"
    page = auditor.get(f"/agencies/{traffic.g22.code}")
    assert 'id="certificates"' in page.text and "register" in page.text
    assert 'id="suspend-button"' not in page.text  # an auditor gets no buttons
    log = rows(auditor.get(f"/agencies/{traffic.g22.code}?format=csv"))
    assert log[0]["action"] == "register" and log[0]["actor"] == "test-admin"
    assert auditor.get("/agencies/000.00.00.X99").status_code == 404


def test_language_switch(auditor):
    t_vi, t_en = i18n.translator("vi"), i18n.translator("en")
    page = auditor.get("/agencies")
    assert '<html lang="vi">' in page.text and t_vi("agencies_title") in page.text
    link = unescape(re.search(r'id="lang-switch" href="([^"]+)"', page.text).group(1))
    assert link == "/lang/en?next=%2Fagencies"
    switched = auditor.get(link)
    assert switched.status_code == 303 and switched.headers["location"] == "/agencies"
    assert "lang=en" in switched.headers["set-cookie"]
    english = auditor.get("/agencies")
    assert '<html lang="en">' in english.text and t_en("agencies_title") in english.text
    assert t_vi("agencies_title") not in english.text
    assert "/lang/vi?next=" in english.text
    assert auditor.get("/lang/vi?next=https://evil.example").headers["location"] == "/"


def test_numbers_and_times_are_written_the_local_way():
    assert i18n.number(1234567, "vi") == "1.234.567"
    assert i18n.number(1234567, "en") == "1,234,567"
    from datetime import UTC, datetime

    moment = datetime(2026, 12, 5, 18, 30, tzinfo=UTC)  # already the 6th in Hà Nội
    assert i18n.when(moment, "vi") == "06/12/2026 01:30:00"
    assert i18n.when(moment, "en") == "2026-12-06 01:30:00"


def test_every_message_has_both_languages():
    for key, (vi, en) in i18n.MESSAGES.items():
        assert vi.strip() and en.strip(), key


def crawl(client, start: list[str], limit: int = 200) -> dict[str, str]:
    """Every page and CSV reachable by GET from ``start`` on this site."""
    seen: dict[str, str] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        path = queue.pop()
        if path in seen or path.startswith(("/lang/", "/static/", "/proof/")):
            continue
        answer = client.get(path)
        seen[path] = answer.text
        for href in re.findall(r'href="([^"]+)"', answer.text):
            href = unescape(href)
            if href.startswith("/") and not href.startswith("//"):
                queue.append(href)
    return seen


def test_no_attachment_content_on_any_page_or_csv_or_log(auditor, admin, traffic, caplog):
    start = ["/", "/documents", doc_path(traffic), "/refusals", "/agencies", "/ledger"]
    caplog.set_level(logging.DEBUG)
    for client in (auditor, admin):
        seen = crawl(client, start)
        assert len(seen) > 15
        assert any(urlsplit(p).path.startswith("/receipts/") for p in seen)
        assert any("format=csv" in p for p in seen)
        for path, text in seen.items():
            for trace in attachment_traces():
                assert trace.decode() not in text, path
    assert caplog.records  # the requests were logged, and nothing of the attachment
    for trace in attachment_traces():
        assert trace.decode() not in caplog.text


def test_the_ledger_page_shows_the_position_of_a_fault(admin, traffic):
    token = re.search(r'name="csrf" value="([^"]+)"', admin.get("/ledger").text).group(1)
    intact = admin.post("/ledger/verify", data={"csrf": token})
    assert 'data-intact="true"' in intact.text
    sessions = session_factory(traffic.hub.engine)
    with sessions.begin() as session:
        original = session.get(journal.LedgerRow, 3).kind
        session.execute(update(journal.LedgerRow).where(journal.LedgerRow.seq == 3)
                        .values(kind="rejected"))
    try:
        broken = admin.post("/ledger/verify", data={"csrf": token})
        assert 'data-intact="false"' in broken.text
        assert re.findall(r'<tr data-seq="(\d*)">', broken.text) == ["3"]
        with sessions() as session:
            last = reports.last_ledger_check(session)
        assert (last.intact, last.first_fault_seq, last.actor) == (False, 3, "console:an.admin")
        assert rows(admin.get("/ledger?format=csv"))[0]["first_fault_seq"] == "3"
    finally:
        with sessions.begin() as session:
            session.execute(update(journal.LedgerRow).where(journal.LedgerRow.seq == 3)
                            .values(kind=original))
    assert 'data-intact="true"' in admin.post("/ledger/verify", data={"csrf": token}).text
