"""What the admin commands do, one method each: the registry and the broker, kept in step.

The CLI parses options and prints; :class:`Admin` opens the transaction, calls
:mod:`vdx.registry` and :mod:`vdx.broker.provision`, and decides the order that keeps the
database and the broker consistent or repairable:

- a change is validated and flushed first (every refusal happens before the broker is
  touched), then the broker is changed, then the transaction commits. A broker failure
  rolls the registry back; a commit failure after the broker changed is repaired by
  running the same command again (every broker step is idempotent, and a registration
  always issues a fresh password, so a half-done one never leaves an unknown password).
- ``vdx init`` converges everything: schema, hub certificate, topology, and every node's
  inbox, binding and rights (it never creates or resets a password).

Configuration (:class:`HubConfig.from_env`): ``VDX_DATABASE_URL`` (:mod:`vdx.store`),
``VDX_AMQP_URL`` and ``VDX_MANAGEMENT_URL`` (:mod:`vdx.broker.provision`), ``VDX_PKI_DIR`` (the
hub's certificate directory, default ``$VDX_HOME/pki``, laid out as :class:`vdx.xmldsig.pki.CaDir`),
``VDX_TRUST_DIR`` (trust anchors and CRLs for registration, default the PKI directory) and
``VDX_ACTOR`` (the name written to the admin log, default the login name).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from vdx import store
from vdx.broker import provision
from vdx.broker.provision import BrokerSettings, Credentials, ManagementApi
from vdx.errors import RegistryError, TransportError
from vdx.registry import nodes as registry
from vdx.xmldsig import pki


@dataclass(frozen=True)
class HubConfig:
    database_url: str
    broker: BrokerSettings
    pki_dir: Path
    trust_dir: Path
    actor: str

    @classmethod
    def from_env(cls) -> HubConfig:
        pki_dir = Path(os.environ.get("VDX_PKI_DIR") or store.vdx_home() / "pki").expanduser()
        trust = os.environ.get("VDX_TRUST_DIR")
        return cls(store.database_url(), BrokerSettings.from_env(), pki_dir,
                   Path(trust).expanduser() if trust else pki_dir,
                   os.environ.get("VDX_ACTOR") or _login())

    @property
    def hub_cert(self) -> Path:
        return pki.CaDir(self.pki_dir).hub_cert


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


@dataclass(frozen=True)
class InitReport:
    revision: str
    hub_cert: Path
    created_test_ca: bool
    issued_hub_cert: bool
    created_vhost: bool
    nodes_checked: int
    missing_accounts: tuple[str, ...]
    # Nodes still logging in under a name that is not per vhost (registered before
    # accounts were): `vdx node credentials CODE --reset` moves each.
    shared_name_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeView:
    """Everything ``vdx node show`` prints: the node, its certificates, its admin log."""

    node: registry.Node
    certificates: tuple[registry.Certificate, ...]
    log: tuple[registry.AdminEntry, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return self.node.to_dict() | {
            "certificates": [c.to_dict() for c in self.certificates],
            "admin_log": [e.to_dict() for e in self.log],
        }


class Admin:
    """One admin command's worth of database and broker access (see the module doc)."""

    def __init__(self, config: HubConfig, *, engine: Engine | None = None,
                 api: ManagementApi | None = None) -> None:
        self.config = config
        self._engine = engine
        self._api = api
        self._checked_schema = False

    # ---------------------------------------------------------------- plumbing --

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = store.make_engine(self.config.database_url)
        return self._engine

    @property
    def api(self) -> ManagementApi:
        if self._api is None:
            self._api = ManagementApi(self.config.broker)
        return self._api

    @property
    def vhost(self) -> str:
        return self.config.broker.vhost

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction; database failures become ``transport.unavailable``."""
        try:
            if not self._checked_schema:
                self._require_schema()
            with store.session_factory(self.engine).begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise TransportError("transport.unavailable",
                                 f"database error: {first_line(exc)}") from exc

    def _require_schema(self) -> None:
        revision = store.current_revision(self.engine)
        if revision != store.head_revision():
            state = "is not initialised" if revision is None else f"is at {revision}"
            raise TransportError("transport.unavailable",
                                 f"the database {_shown_url(self.engine)} {state}; "
                                 f"run `vdx init`")
        self._checked_schema = True

    def trust_check(self) -> registry.CertificateCheck:
        """The chain check against ``VDX_TRUST_DIR``, loaded when first needed: a request
        refused for a malformed code should say so, not complain about the trust store."""
        from vdx.xmldsig.trust import TrustStore, TrustStoreError

        loaded: list[registry.CertificateCheck] = []

        def check(certificate: x509.Certificate, now: datetime) -> None:
            if not loaded:
                try:
                    trust = TrustStore.from_dir(self.config.trust_dir)
                except TrustStoreError as exc:
                    raise RegistryError("registry.certificate_untrusted",
                                        f"no usable trust anchors ({exc}); set "
                                        f"VDX_TRUST_DIR") from exc
                loaded.append(registry.trust_check(trust))
            loaded[0](certificate, now)

        return check

    # ---------------------------------------------------------------- commands --

    def init(self, *, dev_ca: bool = True) -> InitReport:
        """Migrate, make sure the hub has a certificate, declare the topology, repair nodes
        (each gets its submit queue; a revoked node's goes once drained)."""
        try:
            revision = store.migrate(self.engine)
        except SQLAlchemyError as exc:
            raise TransportError("transport.unavailable",
                                 f"cannot migrate {_shown_url(self.engine)}: "
                                 f"{first_line(exc)}") from exc
        created_ca, issued = self._ensure_hub_certificate(dev_ca)
        created_vhost = provision.ensure_vhost(self.api, self.vhost)
        provision.ensure_topology(self.api, self.vhost)
        with self.transaction() as session:
            nodes = registry.list_nodes(session)
        missing, shared = [], []
        for node in nodes:
            account = node.broker_user
            if node.status == registry.REVOKED:
                provision.close_node_account(self.api, self.vhost, node.code, account=account)
                provision.drop_submit_queue_if_empty(self.api, self.vhost, node.code)
                continue
            if account != provision.node_account(node.code, self.vhost):
                shared.append(node.code)
            provision.provision_node(self.api, self.vhost, node.code, account=account,
                                     create_user=False)
            if not provision.account_exists(self.api, account):
                missing.append(node.code)
        return InitReport(revision, self.config.hub_cert, created_ca, issued, created_vhost,
                          len(nodes), tuple(missing), tuple(shared))

    def _ensure_hub_certificate(self, dev_ca: bool) -> tuple[bool, bool]:
        ca = pki.CaDir(self.config.pki_dir)
        if ca.hub_cert.exists():
            return False, False
        created = False
        if not ca.root_key.exists():
            if not dev_ca:
                raise pki.PkiError(
                    f"no hub certificate at {ca.hub_cert} and no CA to issue one; put the "
                    f"hub's certificate and key there (hub/hub.pem, hub/hub.key) or run "
                    f"`vdx init --dev-ca` for a TEST development CA")
            pki.init_ca(ca.path)
            created = True
        # ECDSA P-256: the hub signs every receipt and ledger entry, ~20x cheaper than RSA.
        pki.issue_hub(ca.path, ec_key=True)
        return created, True

    def register(self, code: str, name: str, certificate: bytes, *,
                 parent_code: str | None = None, email: str | None = None,
                 allow_nonstandard_code: bool = False) -> tuple[registry.Node, Credentials]:
        """Register ``code`` and give it a broker account; ``allow_nonstandard_code``
        admits a code in neither official form (see :func:`vdx.registry.nodes.check_code`)."""
        check = self.trust_check()
        account = provision.node_account(code, self.vhost)
        with self.transaction() as session:
            node = registry.register_node(session, code, name, certificate, check=check,
                                          actor=self.config.actor, parent_code=parent_code,
                                          email=email, allow_nonstandard=allow_nonstandard_code,
                                          broker_user=account)
            self._require_free_account(account, code)
            credentials = provision.provision_node(self.api, self.vhost, code,
                                                   account=account, new_password=True)
        assert credentials is not None
        return node, credentials

    def _require_free_account(self, account: str, code: str) -> None:
        # The node's broker user, whose password registration sets. A user of that name
        # that is not this node's (the hub's own logins, an administrator: any tag, another
        # application: other rights here, another hub: rights in another vhost) must never
        # be taken over. One without tags whose rights here are none or exactly the node's
        # is a registration that failed halfway, which running it again repairs.
        user = self.api.get(f"users/{quote(account, safe='')}")
        if user is None:
            return
        tags = user.get("tags") or []
        tags = [t for t in (tags.split(",") if isinstance(tags, str) else tags) if t]
        settings = self.api.settings
        rights = self.api.get(f"permissions/{quote(self.vhost, safe='')}/"
                              f"{quote(account, safe='')}")
        expected = provision.node_permissions(code)
        if account in (settings.user, settings.amqp_user):
            whose = "it is the hub's own login"
        elif tags:
            whose = f"it has the tags {', '.join(tags)}"
        elif rights is not None and (rights.get("configure"), rights.get("write"),
                                     rights.get("read")) != (expected.configure,
                                                             expected.write, expected.read):
            whose = "it has other rights in this vhost (another application's?)"
        else:
            provision.refuse_foreign_account(self.api, self.vhost, account)
            return
        raise RegistryError("registry.bad_code",
                            f"a broker account named {account} exists already and is not a "
                            f"node's ({whose}); a node's code names its broker account, so "
                            f"choose another code")

    def suspend(self, code: str) -> registry.Transition:
        with self.transaction() as session:
            return registry.suspend_node(session, code, actor=self.config.actor)

    def resume(self, code: str) -> registry.Transition:
        # Suspension leaves the broker account alone (the node may drain its inbox), so
        # resuming is a registry change only.
        with self.transaction() as session:
            return registry.resume_node(session, code, actor=self.config.actor)

    def revoke(self, code: str) -> registry.Transition:
        with self.transaction() as session:
            transition = registry.revoke_node(session, code, actor=self.config.actor)
            provision.close_node_account(self.api, self.vhost, code,
                                         account=registry.get_node(session, code).broker_user)
        return transition

    def rotate_cert(self, code: str, certificate: bytes,
                    overlap_days: int = registry.DEFAULT_OVERLAP_DAYS) -> registry.Certificate:
        check = self.trust_check()
        with self.transaction() as session:
            return registry.rotate_cert(session, code, certificate, check=check,
                                        actor=self.config.actor, overlap_days=overlap_days)

    def reset_credentials(self, code: str) -> Credentials:
        with self.transaction() as session:
            node = registry.get_node(session, code)
            if node.status == registry.REVOKED:
                raise RegistryError("registry.node_revoked",
                                    f"{code} is revoked; its broker account stays closed")
            registry.record_action(session, code, "reset_credentials", actor=self.config.actor)
            account = provision.node_account(code, self.vhost)
            if node.broker_user != account:
                # A new password is minted anyway: the node moves to its per-vhost name,
                # and the old name is closed here (another hub's of the same name keeps it).
                self._require_free_account(account, code)
                registry.set_broker_user(session, code, account, actor=self.config.actor)
                provision.close_node_account(self.api, self.vhost, code,
                                             account=node.broker_user)
            return provision.reset_password(self.api, self.vhost, code, account=account)

    def set_limits(self, code: str, **limits: float | int | None) -> registry.Node:
        """Change ``code``'s limits (``rate``, ``burst``, ``max_bytes_per_day``; None
        removes one); the hub's workers apply them within seconds."""
        with self.transaction() as session:
            return registry.set_limits(session, code, actor=self.config.actor, **limits)

    def list_nodes(self, status: str | None = None) -> tuple[registry.Node, ...]:
        with self.transaction() as session:
            return registry.list_nodes(session, status)

    def show(self, code: str, now: datetime | None = None) -> NodeView:
        with self.transaction() as session:
            return NodeView(registry.get_node(session, code),
                            registry.certificate_history(session, code, now),
                            registry.admin_log(session, code))

    def hub_certificate(self) -> x509.Certificate | None:
        path = self.config.hub_cert
        return pki.load_certificate(path) if path.exists() else None


def first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]


def _shown_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
