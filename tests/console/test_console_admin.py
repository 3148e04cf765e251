"""Suspending and resuming nodes from the console: admins through vdx's Admin (the admin
log names them), auditors refused with 403 and the attempt logged."""

from __future__ import annotations

from tests.console.conftest import csrf_of
from vdx.registry import nodes as registry


def log_of(traffic, code: str) -> list[registry.AdminEntry]:
    with traffic.hub.admin.transaction() as session:
        return list(registry.admin_log(session, code))


def status_of(traffic, code: str) -> str:
    with traffic.hub.admin.transaction() as session:
        return registry.get_node(session, code).status


def test_an_auditor_may_not_suspend_and_the_attempt_is_logged(auditor, traffic):
    code = traffic.h49.code
    page = auditor.get(f"/agencies/{code}")
    assert 'id="suspend-button"' not in page.text
    answer = auditor.post(f"/agencies/{code}/suspend", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 403 and 'id="error-message"' in answer.text
    assert status_of(traffic, code) == "active"
    denied = log_of(traffic, code)[-1]
    assert (denied.actor, denied.action) == ("console:binh.auditor", "denied")
    assert denied.after == {"action": "suspend", "role": "auditor"}
    assert auditor.post(f"/agencies/{code}/resume",
                        data={"csrf": csrf_of(page.text)}).status_code == 403


def test_an_admin_suspends_and_resumes_with_the_actor_logged(admin, traffic):
    code = traffic.h41.code
    page = admin.get(f"/agencies/{code}")
    assert 'id="suspend-form"' in page.text and 'id="resume-form"' not in page.text
    done = admin.post(f"/agencies/{code}/suspend", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303 and done.headers["location"] == f"/agencies/{code}?done=suspend"
    assert status_of(traffic, code) == "suspended"
    entry = log_of(traffic, code)[-1]
    assert (entry.actor, entry.action) == ("console:an.admin", "suspend")
    assert entry.before["status"] == "active" and entry.after["status"] == "suspended"
    shown = admin.get(done.headers["location"])
    assert 'data-status="suspended"' in shown.text and 'id="flash"' in shown.text
    assert 'class="actor">console:an.admin<' in shown.text
    assert 'id="resume-button"' in shown.text
    # The hub refuses the suspended node's packages now.
    h41 = traffic.h41
    h41.send(h41.document(traffic.g22.code))
    (refused,) = h41.inbox(1)
    assert refused.receipt.kind == "rejected"
    back = admin.post(f"/agencies/{code}/resume", data={"csrf": csrf_of(shown.text)})
    assert back.status_code == 303 and status_of(traffic, code) == "active"
    assert log_of(traffic, code)[-1].action == "resume"


def test_an_unknown_action_or_node(admin, traffic):
    token = csrf_of(admin.get("/agencies").text)
    assert admin.post(f"/agencies/{traffic.g22.code}/revoke",
                      data={"csrf": token}).status_code == 404
    assert admin.post("/agencies/000.00.00.X99/suspend", data={"csrf": token}).status_code == 404
    assert status_of(traffic, traffic.g22.code) == "active"
