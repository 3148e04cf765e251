"""The administrator's side of the gateway: connected systems, signing keys, its account.

What ``vdx gateway add-system / set-policy / rotate-secret / systems / remove-system /
sign-for`` do, in
the order :class:`vdx.registry.admin.Admin` keeps the database and the broker consistent: validate
and flush first (every refusal happens before the broker is touched), then change the
broker, then commit. A broker failure rolls the database back; running the same command
again repairs a half-done one.

The gateway's broker account (:func:`vdx.registry.delegates.gateway_user`) is created with the first
system and its rights follow the set of served nodes: read exactly their inboxes, write
``vdx.submit``. Its password is written once, when the account is created, to a 0600
credentials file that ``vdx gateway run`` reads; ``vdx gateway credentials --reset``
issues a new one (a running gateway must then be restarted).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from vdx_adapters.gateway import tables as gateway

from vdx import store
from vdx.broker import provision
from vdx.broker.provision import Credentials
from vdx.broker.wire import inbox_queue, receipts_queue
from vdx.errors import GatewayError
from vdx.registry import nodes as registry
from vdx.registry.admin import Admin
from vdx.xmldsig import pki

from . import keyfile
from .auth import POLICIES, READINGS

CREDENTIALS_FILE = "gateway-broker.json"


def default_credentials_file() -> Path:
    """``$VDX_HOME/gateway-broker.json``: where ``add-system`` writes the account's
    password and ``gateway run`` reads it."""
    return store.vdx_home() / CREDENTIALS_FILE


@dataclass(frozen=True)
class NewSystem:
    """What ``add-system`` shows once: the system, its secret and, when the gateway's
    broker account was created, where its password was written (``credentials_missing``
    names the file when the account exists but that file does not: reset it)."""

    system: gateway.System
    secret: str
    credentials_written: Path | None = None
    credentials_missing: Path | None = None
    key_created: Path | None = None  # the secrets' key file, when this command wrote it
    warnings: tuple[str, ...] = ()  # nodes whose inbox another client reads too


def add_system(admin: Admin, system_id: str, nodes: tuple[str, ...], *,
               credentials_file: Path | None = None, sign_key: Path | None = None,
               sign_cert: Path | None = None, policy: str = gateway.STRICT,
               zone: str = gateway.AUTO_ZONE, allow_from: Iterable[str] = ()) -> NewSystem:
    """Register ``system_id`` for ``nodes``; returns its secret (shown once).

    ``sign_key``/``sign_cert`` (only with a single node) let the gateway sign that node's
    unsigned packages, as :func:`sign_for` does. ``policy``, ``zone`` and ``allow_from``
    are how its requests are judged (:func:`set_policy`); the defaults refuse replays,
    read timestamps in either zone and accept any address.
    """
    policy, zone, networks = _policy(policy), _zone(zone), _networks(allow_from)
    if (sign_key is None) != (sign_cert is None):
        raise GatewayError("gateway.bad_key", "give both --sign-with-key and --cert")
    if sign_key is not None and len(set(nodes)) != 1:
        raise GatewayError("gateway.bad_key", "--sign-with-key needs exactly one --node; use "
                                              "`vdx gateway sign-for CODE` for each node")
    secret = secrets.token_urlsafe(32)  # 256 bits; the SDK sends it as an HMAC key
    target = credentials_file or default_credentials_file()
    key = keyfile.ensure_key(admin.config.pki_dir)
    with admin.transaction() as session:
        system = gateway.create_system(session, system_id, tuple(nodes),
                                       gateway.seal_secret(secret, key.key),
                                       actor=admin.config.actor,
                                       policy=policy, zone=zone, allow_from=networks)
        if sign_key is not None:
            _configure_signer(session, admin, nodes[0], sign_key, sign_cert)
        credentials = _sync_account(admin, session)
        written = provision.write_credentials(target, credentials) if credentials else None
    missing = None if written or target.exists() else target
    return NewSystem(system, secret, written, missing,
                     Path(key.source) if key.created else None,
                     tuple(warning for _, warning in shared_inboxes(admin, system.nodes)))


def shared_inboxes(admin: Admin, codes: Iterable[str]) -> list[tuple[str, str]]:
    """(code, warning) for each node in ``codes`` that another client also serves: a consumer on
    its inbox other than the gateway's, or a connection of the node's own broker account.

    Both would take messages from the inbox the gateway drains, so the node's documents
    and receipts would be split between the gateway's mailbox and that client."""
    codes = tuple(codes)
    if not codes:
        return []
    vhost = admin.vhost
    mine = gateway.gateway_user(vhost)
    consumers = admin.api.get(f"consumers/{quote(vhost, safe='')}") or ()
    readers: dict[str, set[str]] = {}
    for consumer in consumers:
        user = (consumer.get("channel_details") or {}).get("user") or "?"
        if user != mine:
            readers.setdefault((consumer.get("queue") or {}).get("name"), set()).add(user)
    connected = {c.get("user") for c in admin.api.get("connections") or ()
                 if c.get("vhost") == vhost}
    with admin.transaction() as session:
        accounts = {code: registry.get_node(session, code).broker_user for code in codes}
    warnings = []
    for code, account in accounts.items():
        others = readers.get(inbox_queue(code), set()) | readers.get(receipts_queue(code),
                                                                      set())
        if others or account in connected:
            who = (f"its inbox has a consumer ({', '.join(sorted(others))})" if others
                   else f"its broker account {account} is connected")
            warnings.append((code, f"{code} is also served by another client: {who}; with "
                                   f"a gateway system too, its documents and receipts are "
                                   f"split between them. Serve each node one way only (stop "
                                   f"that client, or `vdx gateway remove-system`)"))
    return warnings


def rotate_secret(admin: Admin, system_id: str) -> NewSystem:
    """A new secret for ``system_id`` (shown once); the old one stops working at once."""
    secret = secrets.token_urlsafe(32)
    key = keyfile.ensure_key(admin.config.pki_dir)
    with admin.transaction() as session:
        system = gateway.replace_secret(session, system_id, gateway.seal_secret(secret, key.key),
                                        actor=admin.config.actor)
    return NewSystem(system, secret, key_created=Path(key.source) if key.created else None)


def reset_credentials(admin: Admin, credentials_file: Path | None = None) -> Path:
    """A new password for the gateway's broker account, written to ``credentials_file``
    (default :func:`default_credentials_file`); the old one stops working at once."""
    target = credentials_file or default_credentials_file()
    with admin.transaction() as session:
        credentials = _sync_account(admin, session, new_password=True)
        assert credentials is not None
        return provision.write_credentials(target, credentials)


def remove_system(admin: Admin, system_id: str) -> gateway.System:
    """Remove ``system_id``: its secret stops working at once; the gateway stops draining
    the inboxes of nodes no other system serves (their mailbox rows stay)."""
    with admin.transaction() as session:
        system = gateway.delete_system(session, system_id, actor=admin.config.actor)
        _sync_account(admin, session)
    return system


def set_policy(admin: Admin, system_id: str, *, policy: str | None = None,
               zone: str | None = None, allow_from: Iterable[str] | None = None,
               ) -> gateway.System:
    """Change how ``system_id``'s requests are judged; ``None`` keeps a setting, an empty
    ``allow_from`` accepts any address. Takes effect with the system's next request.

    ``policy``: ``strict`` (each signed request once, its timestamp within the replay
    window) or ``compatible`` (the VXP SDK as deployed: one service object for the whole
    run, identical requests re-sent); ``zone``: ``auto``, ``UTC`` or ``Asia/Ho_Chi_Minh``,
    how its timestamps are read; ``allow_from``: the networks (CIDR) it may connect from.
    """
    if policy is None and zone is None and allow_from is None:
        raise GatewayError("gateway.bad_request",
                           "give --policy, --zone, --allow-from or --any-address")
    with admin.transaction() as session:
        return gateway.update_system(
            session, system_id, actor=admin.config.actor,
            policy=None if policy is None else _policy(policy),
            zone=None if zone is None else _zone(zone),
            allow_from=None if allow_from is None else _networks(allow_from))


def _policy(policy: str) -> str:
    if policy not in POLICIES:
        raise GatewayError("gateway.bad_request", f"policy {policy!r}: use {' or '.join(POLICIES)}")
    return policy


def _zone(zone: str) -> str:
    """``zone`` in its canonical spelling (``utc`` is ``UTC``)."""
    canonical = {name.lower(): name for name in READINGS}
    if zone.lower() not in canonical:
        raise GatewayError("gateway.bad_request", f"zone {zone!r}: use {', '.join(READINGS)}")
    return canonical[zone.lower()]


def _networks(allow_from: Iterable[str]) -> tuple[str, ...]:
    """Each address or CIDR network normalised (``203.0.113.7`` is ``203.0.113.7/32``); a
    network with host bits set is refused rather than guessed at."""
    networks = []
    for text in allow_from:
        try:
            networks.append(str(ipaddress.ip_network(text.strip())))
        except ValueError as exc:
            raise GatewayError("gateway.bad_request",
                               f"--allow-from {text!r}: not an address or network in CIDR form "
                               f"such as 203.0.113.7 or 203.0.113.0/24 ({exc})") from exc
    return tuple(dict.fromkeys(networks))


def list_systems(admin: Admin) -> tuple[gateway.System, ...]:
    with admin.transaction() as session:
        return gateway.list_systems(session)


def sign_for(admin: Admin, code: str, key: Path, cert: Path) -> gateway.SignerConfig:
    """Let the gateway sign ``code``'s unsigned packages with this key and certificate.

    The files stay where they are (the database keeps their absolute paths); the key must
    be readable by its owner only, belong to the certificate, and the certificate must be
    the one registered for ``code`` now, or the hub would refuse every signature.
    """
    with admin.transaction() as session:
        return _configure_signer(session, admin, code, key, cert)


def stop_signing(admin: Admin, code: str) -> bool:
    with admin.transaction() as session:
        return gateway.clear_signer(session, code, actor=admin.config.actor)


def _configure_signer(session, admin: Admin, code: str, key: Path,
                      cert: Path | None) -> gateway.SignerConfig:
    from .service import load_signer

    assert cert is not None
    key, cert = Path(key).expanduser().resolve(), Path(cert).expanduser().resolve()
    signer = load_signer(str(key), str(cert))
    if pki.agency_code_of(signer.certificate) != code:
        raise GatewayError("gateway.bad_key",
                           f"{cert} was issued to {pki.agency_code_of(signer.certificate)}, "
                           f"not {code}")
    current = [c for c in registry.certificate_history(session, code)
               if c.status == registry.CURRENT]
    if not current or current[0].fingerprint != registry.fingerprint_of(signer.certificate):
        raise GatewayError("gateway.bad_key",
                           f"{cert} is not {code}'s current registered certificate; the hub "
                           f"would refuse every package signed with it (`vdx node show {code}`)")
    return gateway.set_signer(session, code, str(key), str(cert), actor=admin.config.actor)


def refresh_account(admin: Admin) -> bool:
    """For ``vdx init``: give an existing gateway account exactly the rights its served
    nodes need now (a new release may add queues, such as the receipts queues); a
    missing account is left missing (no password nobody asked for). True if it exists."""
    if not provision.account_exists(admin.api, gateway.gateway_user(admin.vhost)):
        return False
    with admin.transaction() as session:
        _sync_account(admin, session)
    return True


def _sync_account(admin: Admin, session, *, new_password: bool = False,
                  ) -> Credentials | None:
    """Give the gateway account rights for exactly the nodes served now (created, with a
    password, if missing)."""
    session.flush()
    return provision.provision_gateway(admin.api, admin.vhost, gateway.gateway_user(admin.vhost),
                                       gateway.served_nodes(session), new_password=new_password)
