"""The console's security: sessions, CSRF, the slowed-down sign-in, headers, cookies."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from tests.console.conftest import ADMIN, AUDITOR, PASSWORD, console_app, csrf_of, sign_in
from vdx.console import users
from vdx.store import AdminLogRow, ConsoleUserRow, utcnow


def pages(traffic) -> list[str]:
    return ["/", "/?format=csv", "/documents", f"/documents/{quote(traffic.document_id)}",
            f"/proof/{quote(traffic.document_id)}", "/refusals", "/refusals?format=csv",
            "/agencies", f"/agencies/{traffic.g22.code}", "/ledger", "/ledger?format=csv"]


def test_no_page_without_a_session(client, traffic):
    for path in pages(traffic):
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next="), path
        assert traffic.document_id not in answer.text
    posted = client.post(f"/agencies/{traffic.h41.code}/suspend", data={"csrf": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login")
    assert client.post("/ledger/verify").headers["location"].startswith("/login")


def test_a_forged_session_cookie_is_no_session(client, traffic):
    client.cookies.set("vdx_console", "eyJ1c2VyIjogImFuLmFkbWluIn0=.forged.sig")
    assert client.get("/").status_code == 303


def test_sign_in_goes_back_where_it_was_asked(client):
    answer = client.get("/agencies")
    assert answer.headers["location"] == "/login?next=%2Fagencies"
    signed = sign_in(client, AUDITOR, next_="/agencies")
    assert signed.status_code == 303 and signed.headers["location"] == "/agencies"
    assert client.get("/agencies").status_code == 200


def test_sign_in_never_redirects_to_another_site(client):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert sign_in(client, AUDITOR, next_=target).headers["location"] == "/"


def test_csrf_is_required_on_every_post(client, admin, traffic):
    page = client.get("/login")
    refused = client.post("/login", data={"name": AUDITOR, "password": PASSWORD})
    assert refused.status_code == 403 and "vdx_console" not in refused.headers.get(
        "set-cookie", "")
    wrong = client.post("/login", data={"name": AUDITOR, "password": PASSWORD,
                                        "csrf": csrf_of(page.text) + "x"})
    assert wrong.status_code == 403
    code = traffic.h49.code
    for data in ({}, {"csrf": ""}, {"csrf": "not-the-token"}, {"csrf": "é" * 43}):
        answer = admin.post(f"/agencies/{code}/suspend", data=data)
        assert answer.status_code == 403, data
    assert "node-active" in admin.get(f"/agencies/{code}").text  # nothing changed
    assert admin.post("/ledger/verify", data={"csrf": "nope"}).status_code == 403
    assert admin.post("/logout", data={}).status_code == 403
    assert admin.get("/").status_code == 200  # still signed in


def test_the_session_token_changes_at_sign_in(client):
    before = csrf_of(client.get("/login").text)
    sign_in(client, AUDITOR)
    after = csrf_of(client.get("/").text)
    assert before != after


def test_logout_ends_the_session(auditor):
    token = csrf_of(auditor.get("/").text)
    assert auditor.post("/logout", data={"csrf": token}).status_code == 303
    assert auditor.get("/").status_code == 303


def test_security_headers_and_cookie_flags(client, traffic):
    answer = sign_in(client, AUDITOR)
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    assert "secure" not in cookie.replace("samesite", "")
    page = client.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    # Nothing is loaded from elsewhere: every src and href stays on the console.
    assert "<script" not in page.text
    references = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert references and all(r.startswith("/") and not r.startswith("//")
                              for r in references), references
    css = client.get("/static/console.css")
    assert css.status_code == 200 and "url(" not in css.text and "@import" not in css.text


def test_secure_cookies_when_configured(traffic):
    with TestClient(console_app(traffic.hub, secure_cookies=True),
                    base_url="https://testserver", follow_redirects=False) as c:
        assert "; secure" in sign_in(c, AUDITOR).headers["set-cookie"].lower()


@pytest.fixture
def victim(traffic):
    """A fresh account to lock; removed afterwards."""
    name = "chi.locked"
    with traffic.hub.admin.transaction() as session:
        users.add_user(session, name, "auditor", PASSWORD, actor="test")
    yield name
    with traffic.hub.admin.transaction() as session:
        users.remove_user(session, name, actor="test")


def locked_until(traffic, name):
    with traffic.hub.admin.transaction() as session:
        return session.scalar(select(ConsoleUserRow.locked_until)
                              .where(ConsoleUserRow.name == name))


def test_repeated_failures_lock_the_account(client, traffic, victim):
    for _ in range(users.MAX_FAILURES - 1):
        assert sign_in(client, victim, "wrong password!").status_code == 401
    assert locked_until(traffic, victim) is None
    assert sign_in(client, victim, PASSWORD).status_code == 303  # resets the count
    client.cookies.clear()
    for _ in range(users.MAX_FAILURES):
        failed = sign_in(client, victim, "wrong password!")
        assert failed.status_code == 401 and 'id="login-error"' in failed.text
    until = locked_until(traffic, victim)
    assert until is not None and until > utcnow() + timedelta(seconds=20)
    # Locked: even the right password is refused, with the same answer.
    refused = sign_in(client, victim, PASSWORD)
    assert refused.status_code == 401 and "vdx_console=" not in refused.headers.get(
        "set-cookie", "").replace("vdx_console=\"\"", "")
    assert client.get("/").status_code == 303
    with traffic.hub.admin.transaction() as session:
        logged = session.scalars(select(AdminLogRow.action).where(
            AdminLogRow.target == f"user:{victim}")).all()
    assert "console_locked" in logged
    # Once the lock has run out, the next failure locks for twice as long.
    with traffic.hub.admin.transaction() as session:
        session.execute(update(ConsoleUserRow).where(ConsoleUserRow.name == victim)
                        .values(locked_until=utcnow() - timedelta(seconds=1)))
    sign_in(client, victim, "wrong password!")
    assert locked_until(traffic, victim) > utcnow() + timedelta(seconds=50)


def test_lock_time_grows_and_is_bounded():
    times = [users.lock_time(n) for n in range(users.MAX_FAILURES, users.MAX_FAILURES + 12)]
    assert times[0] == users.FIRST_LOCK and times[1] == 2 * users.FIRST_LOCK
    assert times == sorted(times) and times[-1] == users.LONGEST_LOCK
    assert users.lock_time(users.MAX_FAILURES - 1).total_seconds() == 0


def test_an_unknown_name_is_answered_like_a_wrong_password(client):
    unknown = sign_in(client, "nobody.here", PASSWORD)
    wrong = sign_in(client, AUDITOR, "wrong password!")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.text.replace("nobody.here", "X") == wrong.text.replace(AUDITOR, "X")


def test_a_new_password_ends_open_sessions(app, traffic):
    name = "dung.reset"
    with traffic.hub.admin.transaction() as session:
        users.add_user(session, name, "auditor", PASSWORD, actor="test")
    with TestClient(app, follow_redirects=False) as c:
        assert sign_in(c, name).status_code == 303
        assert c.get("/").status_code == 200
        with traffic.hub.admin.transaction() as session:
            users.reset_password(session, name, "another long password", actor="test")
        assert c.get("/").status_code == 303
        with traffic.hub.admin.transaction() as session:
            users.remove_user(session, name, actor="test")
        assert sign_in(c, name, "another long password").status_code == 401


def test_passwords_are_stored_as_argon2id(traffic):
    with traffic.hub.admin.transaction() as session:
        stored = session.scalar(select(ConsoleUserRow.password_hash)
                                .where(ConsoleUserRow.name == ADMIN))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_the_lock_time_never_overflows_however_many_failures():
    assert users.lock_time(100) == users.lock_time(10_000) == users.LONGEST_LOCK


def test_parallel_guesses_cannot_outrun_the_lock(app, traffic):
    """Many wrong passwords at once, the right one among them: the lock still holds
    (SQLite has no row locks; the console signs in one at a time per account)."""
    from concurrent.futures import ThreadPoolExecutor

    name = "parallel.victim"
    with traffic.hub.admin.transaction() as session:
        users.add_user(session, name, "auditor", PASSWORD, actor="test")

    def attempt(password: str) -> int:
        with TestClient(app, follow_redirects=False) as c:
            token = csrf_of(c.get("/login").text)
            return c.post("/login", data={"name": name, "password": password,
                                          "csrf": token, "next": "/"}).status_code

    guesses = [f"wrong guess {i:02d}" for i in range(16)]
    guesses.insert(12, PASSWORD)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, guesses))
    with traffic.hub.admin.transaction() as session:
        row = session.scalar(select(ConsoleUserRow).where(ConsoleUserRow.name == name))
        failures, locked = row.failed_logins, row.locked_until
    # Whatever order the threads ran in, every failure counted (none lost to a race)
    # until the fifth locked the account; after that none was even checked, the right
    # password included.
    assert answers.count(303) <= 1
    assert failures == users.MAX_FAILURES
    assert locked is not None


def test_bad_query_parameters_are_a_bad_request(auditor):
    for query in ("page=%C2%B2", "page=" + "9" * 5000, "page=999999999999999999999",
                  "since=0001-01-01", "until=9999-12-31", "since=not-a-day"):
        assert auditor.get(f"/documents?{query}").status_code == 400, query


def test_an_auditor_cannot_write_log_entries_about_what_is_no_node(auditor):
    token = csrf_of(auditor.get("/agencies").text)
    answer = auditor.post("/agencies/user:an.admin/suspend", data={"csrf": token})
    assert answer.status_code == 404
