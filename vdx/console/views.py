"""The console's pages, one handler each: sign-in, overview, documents (search, one
document's timeline, a receipt, the proof bundle), refusals, agencies (with suspend and
resume for admins), the ledger, and the language switch.

Handlers only check who may ask, call a plain function that reads through the queries
the CLI uses (in the thread pool), and render a template or a CSV (``?format=csv``).
No handler reads a package's body except the proof bundle, which is `vdx audit export`'s.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from vdx.console import i18n, svg, users
from vdx.console.app import (
    LANG_COOKIE,
    Refused,
    actor_of,
    checked_form,
    console_of,
    csrf_token,
    csv_response,
    language,
    render,
    safe_next,
    signed_in,
)
from vdx.core.model import STATUS_CODES
from vdx.errors import RegistryError
from vdx.hub import audit, reports
from vdx.registry import nodes as registry

PAGE_SIZE = 50
DAYS = 30


def routes() -> list[Route]:
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang/{lang}", switch_language, methods=["GET"]),
        Route("/", overview, methods=["GET"]),
        Route("/documents", documents, methods=["GET"]),
        Route("/documents/{document_id:path}", document, methods=["GET"]),
        Route("/receipts/{receipt_id}", receipt, methods=["GET"]),
        Route("/proof/{document_id:path}", proof, methods=["GET"]),
        Route("/refusals", refusals, methods=["GET"]),
        Route("/agencies", agencies, methods=["GET"]),
        Route("/agencies/{code}", agency, methods=["GET"]),
        Route("/agencies/{code}/{action:str}", change_agency, methods=["POST"]),
        Route("/ledger", ledger, methods=["GET"]),
        Route("/ledger/verify", verify_ledger, methods=["POST"]),
    ]


def _csv(request: Request) -> bool:
    return request.query_params.get("format") == "csv"


# ------------------------------------------------------------------ sign-in


async def login_page(request: Request) -> Response:
    return render(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    form = await checked_form(request)
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    target = safe_next(str(form.get("next") or ""))
    console = console_of(request)

    def attempt() -> users.Login:
        with console.signing_in(name[:64]), console.session() as session:
            return users.authenticate(session, name[:64], password[:1024])

    outcome = await run_in_threadpool(attempt)
    if outcome.user is None:
        return render(request, "login.html", 401, failed=True, name=name[:64], next=target)
    request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
    request.session.update(user=outcome.user.name, stamp=outcome.user.stamp)
    csrf_token(request)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def switch_language(request: Request) -> Response:
    lang = i18n.lang_of(request.path_params["lang"])
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True,
                        samesite="strict", secure=console_of(request).config.secure_cookies)
    return response


# ------------------------------------------------------------------ overview


def _overview_data(console) -> dict[str, Any]:
    with console.session() as session:
        data = {
            "days": reports.daily_counts(session, DAYS),
            "pending": reports.pending_deliveries(session),
            "last_check": reports.last_ledger_check(session),
            "head": reports.ledger_position(session),
            "expiring": reports.expiring_certificates(session),
        }
    data["health"] = console.health()
    return data


async def overview(request: Request) -> Response:
    await signed_in(request)
    console = console_of(request)
    if _csv(request):
        def days() -> list[reports.DayCount]:
            with console.session() as session:
                return reports.daily_counts(session, DAYS)

        rows = await run_in_threadpool(days)
        return csv_response("per-day", ["day", "accepted", "rejected", "delivered"],
                            [(d.day, d.accepted, d.rejected, d.delivered) for d in rows])
    data = await run_in_threadpool(_overview_data, console)
    lang = language(request)
    t = i18n.translator(lang)
    series = [svg.Series(k, t(k)) for k in reports.DAY_KINDS]
    chart = svg.bar_chart([d.day.strftime("%d/%m") for d in data["days"]], series,
                          [(d.accepted, d.rejected, d.delivered) for d in data["days"]],
                          caption=t("chart_caption"), number=lambda v: i18n.number(v, lang))
    return render(request, "overview.html", chart=chart, **data)


# ------------------------------------------------------------------ documents


def _day_param(value: str | None, what: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 2999:
        raise Refused(400, "bad_filter", what=f"{what}={value[:40]!r}")
    return day


def _search_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    filters: dict[str, Any] = {
        "document_id": (q.get("document_id") or "").strip()[:512] or None,
        "sender": (q.get("sender") or "").strip()[:64] or None,
        "recipient": (q.get("recipient") or "").strip()[:64] or None,
        "status": q.get("status") if q.get("status") in STATUS_CODES else None,
    }
    since, until = _day_param(q.get("since"), "since"), _day_param(q.get("until"), "until")
    filters["since"] = reports.vietnam_day_start(since) if since else None
    filters["until"] = reports.vietnam_day_start(until + timedelta(days=1)) if until else None
    return filters


def _page(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not (raw.isdecimal() and raw.isascii() and len(raw) <= 6):
        raise Refused(400, "bad_filter", what=f"page={raw[:40]!r}")
    return max(int(raw), 1)


async def documents(request: Request) -> Response:
    await signed_in(request)
    console, filters, page = console_of(request), _search_filters(request), _page(request)

    def search() -> reports.DocumentPage:
        with console.session() as session:
            return reports.search_documents(session, **filters, limit=PAGE_SIZE,
                                            offset=(page - 1) * PAGE_SIZE)

    found = await run_in_threadpool(search)
    if _csv(request):
        return csv_response("documents", ["document_id", "sender", "received_at", "size",
                                          "recipients"],
                            [(d.document_id, d.sender, d.received_at, d.size,
                              " ".join(d.recipients)) for d in found.documents])
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "format")}
    return render(request, "documents.html", found=found, page=page, params=params,
                  statuses=STATUS_CODES)


def _lanes(events: list[audit.TimelineEvent]) -> tuple[list[str], list[svg.Mark]]:
    """One lane per party, the sender's first; each event on the lane of the party it
    concerns (a delivery: its recipient; anything else: who acted)."""
    lanes: list[str] = []
    marks = []
    for e in events:
        lane = e.recipient if e.event == "delivered" and e.recipient else e.actor
        if lane not in lanes:
            lanes.append(lane)
        kind = e.event.split(" ", 1)[0]
        short = {"submitted": "S", "accepted": "A", "delivered": "D", "rejected": "R",
                 "duplicate": "=", "business": "B"}.get(kind, e.event.split(" ")[-1])
        marks.append((lane, kind, short, e))
    return lanes, marks


async def document(request: Request) -> Response:
    await signed_in(request)
    console, document_id = console_of(request), request.path_params["document_id"]

    def load() -> tuple:
        with console.session() as session:
            return (audit.document_timeline(session, document_id),
                    audit.current_statuses(session, document_id),
                    audit.query_receipts(session, document_id=document_id))

    events, current, receipts = await run_in_threadpool(load)
    if not events:
        raise Refused(404, "no_record", what=document_id)
    if _csv(request):
        return csv_response("timeline", ["at", "event", "actor", "recipient", "detail"],
                            [(e.at, e.event, e.actor, e.recipient, e.detail) for e in events])
    lang = language(request)
    t = i18n.translator(lang)
    lanes, placed = _lanes(events)
    marks = [svg.Mark(lane, kind, short, f"{i18n.when(e.at, lang)} · "
                      f"{i18n.event_text(e.event, lang)} · {e.actor}"
                      + (f" → {e.recipient}" if e.recipient else ""))
             for lane, kind, short, e in placed]
    picture = svg.timeline(lanes, marks, caption=t("timeline_caption"))
    return render(request, "document.html", document_id=document_id, events=events,
                  current=current, receipts=receipts, picture=picture)


async def receipt(request: Request) -> Response:
    await signed_in(request)
    console, receipt_id = console_of(request), request.path_params["receipt_id"]

    def load():
        with console.session() as session:
            return audit.get_receipt(session, receipt_id)

    found = await run_in_threadpool(load)
    if found is None:
        raise Refused(404, "no_record", what=receipt_id)
    view, body = found
    return render(request, "receipt.html", receipt=view,
                  xml=body.decode("utf-8", errors="replace"))


async def proof(request: Request) -> Response:
    """The proof bundle of ``vdx audit export``; an auditor's leaves the packages out
    (auditors read metadata and receipts, never a document's content)."""
    user = await signed_in(request)
    console, document_id = console_of(request), request.path_params["document_id"]

    def bundle() -> bytes | None:
        with console.session() as session:
            certificates = audit.bundle_certificates(session, console.admin.config,
                                                     document_id)
            data = audit.export_bundle(session, document_id, certificates,
                                       packages=user.is_admin)
            return data if certificates else None

    data = await run_in_threadpool(bundle)
    if data is None:
        raise Refused(404, "no_record", what=document_id)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", document_id)[:100] or "document"
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="proof-{name}.zip"'})


# ------------------------------------------------------------------ refusals


async def refusals(request: Request) -> Response:
    await signed_in(request)
    console = console_of(request)
    code = (request.query_params.get("code") or "").strip()[:64] or None
    since = reports.vietnam_day_start(reports.last_days(DAYS)[0])

    def load() -> tuple:
        with console.session() as session:
            return (reports.refusals_per_day(session, DAYS),
                    reports.refused_packages(session, code=code, since=since, limit=200))

    per_day, packages = await run_in_threadpool(load)
    if _csv(request):
        if request.query_params.get("table") == "packages":
            return csv_response("refused-packages", ["at", "sender", "document_id", "code"],
                                [(p.at, p.sender, p.document_id, p.code) for p in packages])
        return csv_response("refusals-per-day", ["day", "code", "meaning_vi", "meaning_en",
                                                 "count"],
                            [(r.day, r.code, i18n.error_text(r.code, "vi"),
                              i18n.error_text(r.code, "en"), r.count) for r in per_day])
    totals: dict[str, int] = {}
    days_of: dict[str, list[reports.RefusalCount]] = {}
    for r in per_day:
        totals[r.code] = totals.get(r.code, 0) + r.count
        days_of.setdefault(r.code, []).append(r)
    lang = language(request)
    t = i18n.translator(lang)
    calendar = reports.last_days(DAYS)
    per = {d: 0 for d in calendar}
    for r in per_day:
        per[r.day] = per.get(r.day, 0) + r.count
    chart = svg.bar_chart([d.strftime("%d/%m") for d in calendar],
                          [svg.Series("rejected", t("rejected"))],
                          [(per[d],) for d in calendar], caption=t("refusals_title"),
                          number=lambda v: i18n.number(v, lang))
    return render(request, "refusals.html", totals=sorted(totals.items(),
                                                          key=lambda kv: (-kv[1], kv[0])),
                  days_of=days_of, packages=packages, code=code, chart=chart)


# ------------------------------------------------------------------ agencies


def _since() -> datetime:
    return reports.vietnam_day_start(reports.last_days(DAYS)[0])


async def agencies(request: Request) -> Response:
    await signed_in(request)
    console = console_of(request)

    def load() -> tuple:
        with console.session() as session:
            return registry.list_nodes(session), reports.agency_volumes(session, since=_since())

    nodes, volumes = await run_in_threadpool(load)
    if _csv(request):
        return csv_response("agencies", ["code", "name", "status", "sent", "received",
                                         "refused"],
                            [(n.code, n.name, n.status, *_volume(volumes, n.code))
                             for n in nodes])
    return render(request, "agencies.html", nodes=nodes, volumes=volumes)


def _volume(volumes: dict[str, reports.Volume], code: str) -> tuple[int, int, int]:
    v = volumes.get(code) or reports.Volume(code)
    return v.sent, v.received, v.refused


async def agency(request: Request, done: str | None = None, error: str | None = None,
                 status: int = 200) -> Response:
    user = await signed_in(request)
    console, code = console_of(request), request.path_params["code"]

    def load() -> tuple:
        with console.session() as session:
            node = registry.find_node(session, code)
            if node is None:
                return None, (), (), None
            return (node, registry.certificate_history(session, code),
                    registry.admin_log(session, code),
                    reports.agency_volumes(session, since=_since(), code=code).get(code))

    node, certificates, log, volume = await run_in_threadpool(load)
    if node is None:
        raise Refused(404, "no_record", what=code)
    if _csv(request):
        return csv_response("admin-log", ["at", "actor", "action", "target"],
                            [(e.at, e.actor, e.action, e.target) for e in log])
    return render(request, "agency.html", status, node=node, certificates=certificates,
                  log=list(reversed(log)), volume=volume or reports.Volume(code),
                  may_change=user.is_admin,
                  done=done or request.query_params.get("done"), error=error)


async def change_agency(request: Request) -> Response:
    user = await signed_in(request)
    await checked_form(request)
    console, code = console_of(request), request.path_params["code"]
    action = request.path_params["action"]
    if action not in ("suspend", "resume"):
        raise Refused(404, "not_found")
    if not user.is_admin:
        def deny() -> bool:
            with console.session() as session:
                if registry.find_node(session, code) is None:
                    return False  # no entry about a target that is no node
                registry.log_action(session, actor_of(user), "denied", code,
                                    after={"action": action, "role": user.role})
                return True

        if not await run_in_threadpool(deny):
            raise Refused(404, "no_record", what=code[:64])
        raise Refused(403, "forbidden")
    admin = console.admin_as(user)
    try:
        await run_in_threadpool(getattr(admin, action), code)
    except RegistryError as exc:
        if exc.code == "registry.unknown_node":
            raise Refused(404, "no_record", what=code) from exc
        return await agency(request, error=f"{exc.code}: {exc.message}", status=409)
    return RedirectResponse(f"/agencies/{code}?done={action}", status_code=303)


# ------------------------------------------------------------------ ledger


async def ledger(request: Request) -> Response:
    await signed_in(request)
    console = console_of(request)

    def load() -> tuple:
        with console.session() as session:
            return reports.ledger_checks(session), reports.ledger_position(session)

    checks, head = await run_in_threadpool(load)
    if _csv(request):
        return csv_response("ledger-checks", ["at", "actor", "intact", "entries", "head_seq",
                                              "head_hash", "receipts", "problems",
                                              "first_fault_seq"],
                            [(c.at, c.actor, c.intact, c.entries, c.head_seq, c.head_hash,
                              c.receipts, c.problems, c.first_fault_seq) for c in checks])
    return render(request, "ledger.html", checks=checks, head=head, report=None)


async def verify_ledger(request: Request) -> Response:
    user = await signed_in(request)
    await checked_form(request)
    console = console_of(request)

    def run() -> tuple:
        from vdx.core.ledger import make_hash_verifier

        certificate = console.admin.hub_certificate()
        if certificate is None:
            raise Refused(503, "failed", what="no hub certificate; run `vdx init`")
        if not console.verifying.acquire(blocking=False):
            raise Refused(409, "verify_busy")
        try:
            with console.session() as session:  # as `vdx audit verify` does
                report = audit.verify_ledger(session, make_hash_verifier(certificate))
        finally:
            console.verifying.release()
        with console.session() as session:
            reports.record_ledger_check(session, report, actor=actor_of(user))
            return report, reports.ledger_checks(session), reports.ledger_position(session)

    report, checks, head = await run_in_threadpool(run)
    return render(request, "ledger.html", checks=checks, head=head, report=report)
