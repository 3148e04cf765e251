"""``vdx doctor``: do the database, the broker and the registry agree? And if not, how to fix.

:func:`diagnose` only reads. Each :class:`Finding` names what was checked, says ``ok``,
``warning`` or ``error``, and for anything not ok gives the command that fixes it. Most
fixes are ``vdx init``, which converges schema, topology and every node's inbox, binding
and rights without touching passwords.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy.exc import SQLAlchemyError

from vdx import store
from vdx.broker import provision
from vdx.broker.provision import HUB_TOPOLOGY
from vdx.errors import TransportError
from vdx.registry import delegates as gateway
from vdx.registry import nodes as registry
from vdx.registry.admin import Admin, first_line

OK, WARNING, ERROR = "ok", "warning", "error"
EXPIRY_WARNING = timedelta(days=30)
_INIT = "run `vdx init`"


def _q(name: str) -> str:
    return quote(name, safe="")


@dataclass(frozen=True)
class Finding:
    area: str
    status: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(admin: Admin, now: datetime | None = None) -> tuple[Finding, ...]:
    """Every check, in the order a person would fix things (database, certificate, broker,
    topology, nodes, leftovers)."""
    now = now or store.utcnow()
    findings: list[Finding] = []
    nodes = _database(admin, now, findings)
    _hub_certificate(admin, now, findings)
    if _broker(admin, findings):
        _topology(admin, findings)
        if nodes is not None:
            _nodes(admin, nodes, now, findings)
            _gateway_shared_inboxes(admin, findings)
    return tuple(findings)


def essentials(admin: Admin, now: datetime | None = None) -> tuple[Finding, ...]:
    """The quick part of :func:`diagnose`: the database (schema), the hub certificate and
    whether the broker answers and has the hub's vhost; no per-node check (the web
    console's overview shows it; the management API's own timeout bounds it)."""
    now = now or store.utcnow()
    findings: list[Finding] = []
    _database(admin, now, findings)
    _hub_certificate(admin, now, findings)
    _broker(admin, findings)
    return tuple(findings)


def healthy(findings: tuple[Finding, ...]) -> bool:
    return all(f.status != ERROR for f in findings)


# --------------------------------------------------------------------------- checks

_NodeFacts = list[tuple[registry.Node, tuple[registry.Certificate, ...]]]


def _database(admin: Admin, now: datetime, out: list[Finding]) -> _NodeFacts | None:
    shown = admin.engine.url.render_as_string(hide_password=True)
    try:
        revision = store.current_revision(admin.engine)
    except SQLAlchemyError as exc:
        out.append(Finding("database", ERROR, f"cannot open {shown}: {first_line(exc)}",
                           "check VDX_DATABASE_URL and that the server is running"))
        return None
    head = store.head_revision()
    if revision != head:
        state = "is not initialised" if revision is None else f"is at {revision}, not {head}"
        out.append(Finding("database", ERROR, f"{shown} {state}", _INIT))
        return None
    out.append(Finding("database", OK, f"{shown} at schema {revision}"))
    with admin.transaction() as session:
        return [(n, registry.certificate_history(session, n.code, now))
                for n in registry.list_nodes(session)]


def _hub_certificate(admin: Admin, now: datetime, out: list[Finding]) -> None:
    path = admin.config.hub_cert
    try:
        cert = admin.hub_certificate()
    except ValueError as exc:
        out.append(Finding("hub certificate", ERROR, f"{path} is unreadable ({exc})",
                           "replace it with the hub's PEM certificate"))
        return
    if cert is None:
        out.append(Finding("hub certificate", ERROR, f"none at {path}", _INIT))
    elif not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        out.append(Finding("hub certificate", ERROR,
                           f"{path} is not valid now (until {cert.not_valid_after_utc:%Y-%m-%d})",
                           "install a new hub certificate and key in its place"))
    elif cert.not_valid_after_utc - now < EXPIRY_WARNING:
        out.append(Finding("hub certificate", WARNING,
                           f"{path} expires on {cert.not_valid_after_utc:%Y-%m-%d}",
                           "install a new hub certificate and key before then"))
    else:
        out.append(Finding("hub certificate", OK,
                           f"{path} valid until {cert.not_valid_after_utc:%Y-%m-%d}"))


def _broker(admin: Admin, out: list[Finding]) -> bool:
    try:
        overview = admin.api.get("overview") or {}
        vhost_found = admin.api.get(f"vhosts/{_q(admin.vhost)}") is not None
    except TransportError as exc:
        out.append(Finding("broker", ERROR, exc.message, "start RabbitMQ, then run doctor again"))
        return False
    out.append(Finding("broker", OK, f"RabbitMQ {overview.get('rabbitmq_version', '?')} at "
                                     f"{admin.config.broker.api_url}"))
    if not vhost_found:
        out.append(Finding("broker", ERROR, f"vhost {admin.vhost!r} does not exist", _INIT))
    return vhost_found


def _topology(admin: Admin, out: list[Finding]) -> None:
    api, v = admin.api, _q(admin.vhost)
    before = len(out)
    for ex in HUB_TOPOLOGY.exchanges:
        found = api.get(f"exchanges/{v}/{_q(ex.name)}")
        if found is None:
            out.append(Finding("topology", ERROR, f"exchange {ex.name} is missing", _INIT))
        elif found.get("type") != ex.type or not found.get("durable"):
            out.append(Finding("topology", ERROR,
                               f"exchange {ex.name} is {found.get('type')}, expected durable "
                               f"{ex.type}",
                               f"`rabbitmqctl delete_exchange {ex.name}`, then {_INIT}"))
    for queue in HUB_TOPOLOGY.queues:
        found = api.get(f"queues/{v}/{_q(queue.name)}")
        if found is None:
            out.append(Finding("topology", ERROR, f"queue {queue.name} is missing", _INIT))
        elif found.get("arguments") != dict(queue.arguments):
            out.append(Finding("topology", ERROR,
                               f"queue {queue.name} has arguments {found.get('arguments')}, "
                               f"expected {dict(queue.arguments)}",
                               f"drain it, `rabbitmqctl delete_queue {queue.name}`, then "
                               f"{_INIT}"))
    for binding in HUB_TOPOLOGY.bindings:
        if not provision.has_binding(api, admin.vhost, binding):
            out.append(Finding("topology", ERROR,
                               f"{binding.exchange} → {binding.queue} "
                               f"({binding.routing_key!r}) is not bound", _INIT))
    if len(out) == before:
        out.append(Finding("topology", OK, "exchanges vdx.submit, vdx.deliver, vdx.receipts, "
                                           "vdx.dlx and queues vdx.hub.submit, vdx.hub.dead "
                                           "as declared"))


def _nodes(admin: Admin, nodes: _NodeFacts, now: datetime, out: list[Finding]) -> None:
    api, vhost = admin.api, admin.vhost
    users = {u["name"]: u.get("tags") for u in api.get("users") or ()}
    rights = {p["user"]: p for p in api.get(f"vhosts/{_q(vhost)}/permissions") or ()}
    queues = {q["name"]: q for q in api.get(f"queues/{_q(vhost)}?columns=name,messages") or ()}
    bound = {(b["destination"], b["routing_key"])
             for exchange in (provision.DELIVER_EXCHANGE, provision.RECEIPTS_EXCHANGE)
             for b in api.get(f"exchanges/{_q(vhost)}/{_q(exchange)}/bindings/source") or ()}
    for node, certificates in nodes:
        code, area = node.code, f"node {node.code}"
        inbox = provision.inbox_queue(code)
        is_bound = (inbox, code) in bound
        account = node.broker_user
        if node.status == registry.REVOKED:
            if account in rights or is_bound:
                out.append(Finding(area, ERROR, "revoked, but its broker account or inbox "
                                                "binding still exists",
                                   f"`vdx node revoke {code}` again"))
            else:
                kept = queues.get(inbox, {}).get("messages") or 0
                note = f"; its inbox keeps {kept} undelivered message(s)" if kept else ""
                out.append(Finding(area, OK, f"revoked, account closed{note}"))
            continue
        problems = _account_problems(code, account, users, rights, inbox in queues, is_bound)
        problems += _receipts_problems(code, queues, bound)
        if account != provision.node_account(code, vhost):
            problems.append((WARNING, f"logs in as {account}, a name not bound to this "
                                      f"hub's vhost (another hub on this broker could share "
                                      f"it)", f"`vdx node credentials {code} --reset` moves "
                                              f"it to {provision.node_account(code, vhost)}"))
        problems += _certificate_problems(code, certificates, now)
        for status, detail, fix in problems:
            out.append(Finding(area, status, detail, fix))
        if not problems:
            current = next(c for c in certificates if c.status == registry.CURRENT)
            out.append(Finding(area, OK, f"{node.status}; account, rights and inbox as "
                                         f"registered; certificate valid until "
                                         f"{current.not_after:%Y-%m-%d}"))
    registered = {n.broker_user for n, _ in nodes if n.status != registry.REVOKED}
    for user in sorted(rights):
        if user not in registered and user not in (admin.config.broker.user,
                                                   gateway.gateway_user(vhost)):
            out.append(Finding(f"account {user}", WARNING,
                               f"has rights in vhost {vhost!r} but is not a registered node "
                               f"(a registration that failed halfway?)",
                               f"re-run its `vdx node register`, or `rabbitmqctl delete_user "
                               f"{user}`"))


def _gateway_shared_inboxes(admin: Admin, out: list[Finding]) -> None:
    """A node served by a gateway system and by another client too: its inbox has two
    consumers and its documents and receipts are split between them."""
    try:
        from vdx_adapters.gateway.systems import shared_inboxes
    except ImportError:  # pragma: no cover - the adapters are installed with the hub
        return
    with admin.transaction() as session:
        served = gateway.served_nodes(session)
    for code, warning in shared_inboxes(admin, served):
        out.append(Finding(f"node {code}", WARNING, warning,
                           "stop the other client, or `vdx gateway remove-system`"))


def _account_problems(code: str, account: str, users: dict[str, Any], rights: dict[str, Any],
                      has_inbox: bool, is_bound: bool) -> list[tuple[str, str, str]]:
    problems = []
    if account not in users:
        problems.append((ERROR, f"has no broker account ({account})",
                         f"`vdx node credentials {code} --reset` (prints a new password)"))
    elif users[account]:
        problems.append((ERROR, f"its broker account {account} has tags {users[account]!r}",
                         f"`rabbitmqctl set_user_tags {account}` (no tags)"))
    expected = provision.node_permissions(code)
    actual = rights.get(account)
    if account in users and (actual is None or (actual["configure"], actual["write"],
                                              actual["read"]) != (expected.configure,
                                                                  expected.write,
                                                                  expected.read)):
        problems.append((ERROR, "its broker rights are not exactly the node's", _INIT))
    if not has_inbox:
        problems.append((ERROR, f"its inbox {provision.inbox_queue(code)} is missing", _INIT))
    elif not is_bound:
        problems.append((ERROR, "its inbox is not bound from vdx.deliver", _INIT))
    return problems


def _receipts_problems(code: str, queues: dict[str, Any], bound: set[tuple[str, str]],
                        ) -> list[tuple[str, str, str]]:
    # Without it the hub still puts the node's receipts in its inbox, behind deliveries.
    receipts = provision.receipts_queue(code)
    if receipts not in queues:
        return [(ERROR, f"its receipts queue {receipts} is missing (its receipts wait in its "
                        f"inbox behind unread deliveries)", _INIT)]
    if (receipts, code) not in bound:
        return [(ERROR, "its receipts queue is not bound from vdx.receipts", _INIT)]
    return []


def _certificate_problems(code: str, certificates: tuple[registry.Certificate, ...],
                          now: datetime) -> list[tuple[str, str, str]]:
    current = [c for c in certificates if c.status == registry.CURRENT]
    fix = f"`vdx node rotate-cert {code} --cert NEW.pem`"
    if not current:
        return [(ERROR, "has no current certificate", fix)]
    cert = current[0]
    if now > cert.not_after:
        return [(ERROR, f"its certificate expired on {cert.not_after:%Y-%m-%d}", fix)]
    if cert.not_after - now < EXPIRY_WARNING:
        return [(WARNING, f"its certificate expires on {cert.not_after:%Y-%m-%d}", fix)]
    return []
