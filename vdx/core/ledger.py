"""The ledger: an append-only, hash-chained, hub-signed record of every receipt.

Each :class:`LedgerEntry` holds the hash of the entry before it (``prev_hash``; the first
holds :data:`GENESIS_HASH`), its own ``entry_hash`` over its fields, and the hub's
signature over that hash. :func:`verify_chain` reads the entries back and names every
entry that was edited, deleted, inserted or reordered, and every signature that does not
verify, with its position (``seq``). Someone who can write to the database but does not
hold the hub's key can change the ledger, but not without it showing.

The one thing a chain cannot show by itself is that its newest entries were cut off: the
remaining entries are still a perfect chain. The caller passes a head recorded elsewhere
(``expected_head``/``expected_heads``: a hash published, printed or kept off the
database, such as the hub-signed head documents of :mod:`vdx.core.ledger_head`) to catch
that.

:class:`ReceiptAudit` holds the receipts table to the ledger: each row must say what the
genuine entry of its receipt (and the signed receipt whose hash that entry recorded) says.

Appending must be serialised (the store locks the head row): two entries with the same
predecessor are a fork, which the audit reports.

Pure: no database, no clock unless you omit ``created_at``, no key files; signing and
verifying are callables (:func:`make_hash_signer`, :func:`make_hash_verifier`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from vdx.core.receipts import format_utc, parse_receipt, parse_utc
from vdx.errors import CATALOGUE, VdxError

GENESIS_HASH = "0" * 64
# Versions the encoding below: an entry hashed under another layout can never collide
# with one of these.
HASH_DOMAIN = "vdx-ledger-entry/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Offsets tried, nearest first, to find where a renumbered entry came from.
_NEARBY = tuple(d for n in range(1, 17) for d in (n, -n))

Sign = Callable[[bytes], bytes]
VerifySignature = Callable[[bytes, bytes], bool]  # (signed bytes, signature) -> ok


@dataclass(frozen=True)
class LedgerEntry:
    """One entry as the hub wrote it (or as the database returns it, for the audit).

    ``created_at`` is text (:func:`vdx.core.receipts.format_utc`), not a datetime: the hash
    covers its exact spelling, and text comes back from every database unchanged.
    """

    seq: int
    kind: str
    document_id: str | None
    sender: str | None
    recipient: str | None
    receipt_id: str | None
    receipt_sha256: str | None
    created_at: str
    prev_hash: str
    entry_hash: str
    hub_signature: bytes


@dataclass(frozen=True)
class LedgerHead:
    """The last entry at some moment: record it off the database to detect truncation."""

    seq: int
    entry_hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"

    @classmethod
    def parse(cls, text: str) -> LedgerHead:
        """Read ``"seq:hash"`` as :meth:`__str__` writes it."""
        seq, _, entry_hash = text.strip().partition(":")
        if not seq.isdigit() or not _HEX64.fullmatch(entry_hash):
            raise ValueError(f"not a ledger head (seq:sha256): {text!r}")
        return cls(int(seq), entry_hash)


@dataclass(frozen=True)
class LedgerProblem:
    """One thing wrong with the ledger: a ``ledger.*`` catalogue code, the position
    (``seq``) where an auditor finds it, and what happened in plain words."""

    code: str
    seq: int | None
    message: str

    def to_dict(self) -> dict[str, object]:
        spec = CATALOGUE[self.code]
        return {"code": self.code, "seq": self.seq, "message": self.message,
                "summary_en": spec.en, "summary_vi": spec.vi}


# ====================================================================== hashing ======

def entry_content(seq: int, kind: str, document_id: str | None, sender: str | None,
                  recipient: str | None, receipt_id: str | None, receipt_sha256: str | None,
                  created_at: str, prev_hash: str) -> bytes:
    """The bytes an entry's hash covers.

    A JSON array in a fixed order, ASCII only, no spaces. It is unambiguous: every
    string is quoted and its quotes and backslashes escaped, so no value can end early or
    run into the next; ``null`` (absent) differs from ``""`` (empty); an integer has one
    spelling; ``ensure_ascii`` gives every string exactly one byte form. The leading
    :data:`HASH_DOMAIN` names the layout.
    """
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"seq must be an int, not {seq!r}")
    fields = [HASH_DOMAIN, seq, kind, document_id, sender, recipient, receipt_id,
              receipt_sha256, created_at, prev_hash]
    for value in fields[2:]:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"ledger fields are text, not {type(value).__name__}")
    return _ENCODE(fields).encode("ascii")


# json.dumps(fields, ensure_ascii=True, separators=(",", ":")) builds this encoder anew on
# every call; the encoder keeps no state between calls.
_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def compute_hash(entry: LedgerEntry) -> str:
    """SHA-256 (hex) of :func:`entry_content` of ``entry``'s fields."""
    return hashlib.sha256(entry_content(
        entry.seq, entry.kind, entry.document_id, entry.sender, entry.recipient,
        entry.receipt_id, entry.receipt_sha256, entry.created_at, entry.prev_hash,
    )).hexdigest()


def signing_input(entry_hash: str) -> bytes:
    """What the hub signs: the 32 bytes of the hash (``openssl dgst -sha256 -verify``
    checks it offline). Never a valid XML-DSig SignedInfo, so a ledger signature cannot
    pass for a receipt signature or the other way round."""
    if not _HEX64.fullmatch(entry_hash):
        raise ValueError(f"not a SHA-256 hex digest: {entry_hash!r}")
    return bytes.fromhex(entry_hash)


def next_entry(prev: LedgerEntry | LedgerHead | None, *, kind: str, document_id: str | None = None,
               sender: str | None = None, recipient: str | None = None,
               receipt_id: str | None = None, receipt_sha256: str | None = None,
               created_at: datetime | str | None = None, sign: Sign) -> LedgerEntry:
    """The entry after ``prev`` (``None``: the first), hashed and signed with ``sign``.
    Only its position and hash are chained, so the locked head is enough.

    ``created_at`` defaults to now; a datetime must be aware, a string must already be in
    :func:`~vdx.core.receipts.format_utc` form. ``prev`` is taken as given: the caller holds
    the lock on the head.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError("kind must be a non-empty string")
    if created_at is None:
        created_at = datetime.now(UTC)
    if isinstance(created_at, datetime):
        created_at = format_utc(created_at)
    elif format_utc(parse_utc(created_at)) != created_at:
        raise ValueError(f"created_at is not a canonical UTC timestamp: {created_at!r}")
    seq, prev_hash = (1, GENESIS_HASH) if prev is None else (prev.seq + 1, prev.entry_hash)
    digest = hashlib.sha256(entry_content(seq, kind, document_id, sender, recipient,
                                          receipt_id, receipt_sha256, created_at, prev_hash))
    entry_hash = digest.hexdigest()  # = compute_hash(the entry)
    signature = sign(digest.digest())  # = signing_input(entry_hash)
    if not isinstance(signature, bytes):
        raise TypeError("sign must return bytes")
    return LedgerEntry(seq, kind, document_id, sender, recipient, receipt_id,
                       receipt_sha256, created_at, prev_hash, entry_hash, signature)


def head_of(entries: Iterable[LedgerEntry]) -> LedgerHead | None:
    """The head (highest ``seq``) of ``entries``, to record as a later ``expected_head``."""
    last = max(entries, key=lambda e: e.seq, default=None)
    return None if last is None else LedgerHead(last.seq, last.entry_hash)


# ======================================================================== keys ======

RsaPadding = Literal["pss", "pkcs1v15"]


def make_hash_signer(private_key, *, rsa_padding: RsaPadding = "pss") -> Sign:
    """A ``sign`` for :func:`next_entry`: RSA (PSS or PKCS#1 v1.5) or ECDSA with SHA-256,
    or Ed25519. Load the key once; the signer is safe to share between threads."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        pad, sha256 = _rsa_padding(rsa_padding, signing=True), hashes.SHA256()
        return lambda data: private_key.sign(data, pad, sha256)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(hashes.SHA256())  # stateless: made once, shared by every call
        return lambda data: private_key.sign(data, ecdsa)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign
    raise TypeError(f"unsupported key type {type(private_key).__name__}")


def make_hash_verifier(key_or_certificate, *, rsa_padding: RsaPadding = "pss",
                       ) -> VerifySignature:
    """The ``verify_sig`` matching :func:`make_hash_signer`, for a public key or the hub's
    certificate; it answers False (never raises) for a signature that does not verify."""
    key = (key_or_certificate.public_key()
           if isinstance(key_or_certificate, x509.Certificate) else key_or_certificate)
    if isinstance(key, rsa.RSAPublicKey):
        pad = _rsa_padding(rsa_padding, signing=False)
        check = lambda data, sig: key.verify(sig, data, pad, hashes.SHA256())  # noqa: E731
    elif isinstance(key, ec.EllipticCurvePublicKey):
        check = lambda data, sig: key.verify(sig, data, ec.ECDSA(hashes.SHA256()))  # noqa: E731
    elif isinstance(key, ed25519.Ed25519PublicKey):
        check = lambda data, sig: key.verify(sig, data)  # noqa: E731
    else:
        raise TypeError(f"unsupported key type {type(key).__name__}")

    def verify(data: bytes, signature: bytes) -> bool:
        try:
            check(data, signature)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    return verify


def _rsa_padding(name: str, *, signing: bool) -> padding.AsymmetricPadding:
    if name == "pkcs1v15":
        return padding.PKCS1v15()
    if name == "pss":
        salt = padding.PSS.DIGEST_LENGTH if signing else padding.PSS.AUTO
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    raise ValueError(f"rsa_padding must be 'pss' or 'pkcs1v15', not {name!r}")


# ===================================================================== auditing ======

@dataclass(frozen=True)
class _Seen:
    """What one stored entry proves about itself."""

    content_ok: bool  # its fields hash to its recorded entry_hash
    signed: bool  # the hub signed its recorded entry_hash

    @property
    def authentic(self) -> bool:
        return self.content_ok and self.signed


def verify_chain(entries: Iterable[LedgerEntry], verify_sig: VerifySignature, *,
                 expected_head: LedgerHead | str | None = None,
                 expected_heads: Iterable[LedgerHead | str] = ()) -> list[LedgerProblem]:
    """Every problem in ``entries``, by position; an empty list means the ledger is intact.
    (:func:`audit_chain` also says which entries are genuine.)

    Pass the entries in the order they are stored (``ORDER BY seq`` is fine). Reported:
    ``ledger.edited`` (fields changed), ``ledger.bad_signature`` (not signed by the hub:
    forged, or edited and re-hashed), ``ledger.inserted`` (an extra entry for a position
    that has one), ``ledger.deleted`` (positions missing), ``ledger.reordered`` (stored
    out of order, or renumbered: proven when the entry's signed hash verifies with the seq
    it had), ``ledger.broken_link`` (two genuine entries that do not chain: a fork) and
    ``ledger.truncated`` (``expected_head`` is no longer reached). Each damaged entry is
    reported once, at its stored ``seq``; a run of missing positions is one problem at
    its first position. Problems come back ordered by position.

    ``expected_head`` is a head recorded earlier (:class:`LedgerHead`, or its hash alone;
    the genesis head of an empty ledger checks nothing): entries appended after it are
    fine, losing it is not. A :class:`LedgerHead` also says how many entries were lost.
    ``expected_heads`` are further recorded heads (a head the database keeps, and one
    kept off it); a problem two of them find is reported once.
    """
    return audit_chain(entries, verify_sig, expected_heads=(expected_head, *expected_heads),
                       ).problems


@dataclass(frozen=True)
class ChainAudit:
    """What :func:`audit_chain` found: the problems (as :func:`verify_chain` returns
    them) and the entries that are genuine: written and signed by the hub, holding the
    position they were written at, in position order."""

    problems: list[LedgerProblem]
    genuine: tuple[LedgerEntry, ...]


def audit_chain(entries: Iterable[LedgerEntry], verify_sig: VerifySignature, *,
                expected_heads: Iterable[LedgerHead | str | None] = ()) -> ChainAudit:
    """:func:`verify_chain`, and which entries can be relied on (to check what the
    database holds beside the ledger against them: :class:`ReceiptAudit`)."""
    items = list(entries)
    seen = [_inspect(e, verify_sig) for e in items]
    slot, moved = _positions(items, seen)
    keeper, intruders = _keepers(items, seen, slot, moved)
    problems: list[tuple[int, int, LedgerProblem]] = []  # (seq, storage index, problem)

    def report(index: int, code: str, seq: int | None, message: str) -> None:
        problems.append((seq if isinstance(seq, int) else 0, index,
                         LedgerProblem(code, seq, message)))

    out_of_order = _out_of_order(items, slot, keeper)
    for i, (e, s) in enumerate(zip(items, seen, strict=True)):
        where = f"entry {e.seq}"
        if i in intruders:
            report(i, "ledger.inserted", e.seq, _intruder_message(
                items, seen, i, keeper[intruders[i]], intruders[i]))
        elif not s.authentic and i not in moved:
            if s.signed:
                report(i, "ledger.edited", e.seq,
                       f"{where} was changed after the hub wrote it: its fields no longer "
                       "match its recorded hash")
            elif s.content_ok:
                report(i, "ledger.bad_signature", e.seq,
                       f"{where} is not signed by the hub: forged, or edited and re-hashed")
            else:
                report(i, "ledger.edited", e.seq,
                       f"{where} was changed: neither its hash nor its hub signature match")
        elif i in moved:
            report(i, "ledger.reordered", e.seq,
                   f"the entry stored as {e.seq} is the hub's entry {slot[i]}: entries were "
                   "moved (only their seq differs)")
        elif i in out_of_order:
            report(i, "ledger.reordered", e.seq, out_of_order[i])

    present = sorted(keeper)
    last = present[-1] if present else 0
    for first, end in _gaps(present):
        span = f"entry {first} is" if first == end else f"entries {first}–{end} are"
        report(-1, "ledger.deleted", first, f"{span} missing from the ledger")

    for position in present:
        i = keeper[position]
        if not (seen[i].authentic or i in moved):
            continue  # its prev_hash cannot be trusted; it is reported already
        if position == 1:
            if items[i].prev_hash != GENESIS_HASH:
                report(i, "ledger.broken_link", items[i].seq,
                       f"entry {items[i].seq} is first but does not start from the genesis "
                       "hash: it belongs to another chain")
            continue
        before = keeper.get(position - 1)
        if before is not None and seen[before].signed and \
                items[i].prev_hash != items[before].entry_hash:
            report(i, "ledger.broken_link", items[i].seq,
                   f"entry {items[i].seq} does not follow entry {items[before].seq}: its "
                   f"prev_hash {items[i].prev_hash[:16]}… names another entry (a fork)")

    trusted = {position: i for position, i in keeper.items() if seen[i].authentic or i in moved}
    for head in dict.fromkeys(h for h in expected_heads if h is not None and _names_an_entry(h)):
        _check_head(items, seen, trusted, last, head, report)
    ordered = [p for _, _, p in sorted(problems, key=lambda t: (t[0], t[1]))]
    genuine = tuple(items[i] for position, i in sorted(keeper.items())
                    if seen[i].authentic and items[i].seq == position)
    return ChainAudit(list(dict.fromkeys(ordered)), genuine)


def is_genuine(entry: LedgerEntry, verify_sig: VerifySignature) -> bool:
    """Whether ``entry``'s fields hash to its recorded hash and the hub signed that hash
    (one entry, not its place in the chain: :func:`verify_chain` checks that)."""
    return _inspect(entry, verify_sig).authentic


def _inspect(e: LedgerEntry, verify_sig: VerifySignature) -> _Seen:
    try:
        content_ok = compute_hash(e) == e.entry_hash
    except (TypeError, ValueError):
        content_ok = False  # a field of the wrong type: it was not written by the hub
    signed = (isinstance(e.entry_hash, str) and bool(_HEX64.fullmatch(e.entry_hash))
              and isinstance(e.hub_signature, bytes)
              and bool(verify_sig(signing_input(e.entry_hash), e.hub_signature)))
    return _Seen(content_ok, signed)


def _positions(items: list[LedgerEntry], seen: list[_Seen]) -> tuple[list[int | None], set[int]]:
    """The position of each entry in the hub's chain, and which entries were moved.

    A genuine entry's position is its seq. An entry whose recorded hash the hub signed but
    whose fields no longer match it may have had only its seq changed: its chain link
    (prev_hash names a signed entry, whose position is known) gives the seq it had or,
    when the link leads nowhere, a seq within :data:`_NEARBY` of the stored one is tried;
    if its fields hash to the signed hash with that seq, it was moved, provably (a guess
    can only be confirmed by the hash, never invented). Anything else stays where its
    stored seq puts it.
    """
    by_hash: dict[str, int] = {}  # signed hashes only: a link to them can be trusted
    for i, s in enumerate(seen):
        held = by_hash.get(items[i].entry_hash)
        if s.signed and (held is None or (s.authentic and not seen[held].authentic)):
            by_hash[items[i].entry_hash] = i
    known: dict[int, int | None] = {i: items[i].seq for i, s in enumerate(seen) if s.authentic}
    moved: set[int] = set()
    for start, s in enumerate(seen):
        if not s.signed or s.content_ok or start in known:
            continue
        # Follow the links back to a known position, then prove each step forwards.
        path, on_path, j, base = [start], {start}, start, None
        while True:
            prev_hash = items[j].prev_hash
            if prev_hash == GENESIS_HASH:
                base = 0
                break
            k = by_hash.get(prev_hash)
            if k is None or k in on_path:
                break
            if k in known:
                base = known[k]
                break
            path.append(k)
            on_path.add(k)
            j = k
        for j in reversed(path):
            if base is not None:
                candidates: Iterable[int] = (base + 1,)
            elif _is_position(items[j].seq):
                # Its predecessor is gone (deleted, or damaged itself): a deletion or an
                # insertion followed by renumbering leaves it a few places off.
                candidates = (items[j].seq + d for d in _NEARBY if items[j].seq + d >= 1)
            else:
                candidates = ()
            known[j] = next((c for c in candidates
                             if _hash_with_seq(items[j], c) == items[j].entry_hash), None)
            if known[j] is not None:
                moved.add(j)
            base = known[j]
    slot: list[int | None] = []
    for i, e in enumerate(items):
        position = known.get(i)
        if position is None and _is_position(e.seq):
            position = e.seq
        slot.append(position)
    return slot, moved


def _is_position(seq: object) -> bool:
    return isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1


def _hash_with_seq(e: LedgerEntry, seq: int) -> str | None:
    try:
        return compute_hash(replace(e, seq=seq))
    except (TypeError, ValueError):
        return None


def _keepers(items: list[LedgerEntry], seen: list[_Seen], slot: list[int | None],
             moved: set[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Which entry holds each position, and the extra entries (index -> position).

    Genuine beats moved beats edited beats unsigned; among equals, the first stored.
    """
    def rank(i: int) -> int:
        s = seen[i]
        return 0 if s.authentic else 1 if i in moved else 2 if s.signed else 3

    keeper: dict[int, int] = {}
    intruders: dict[int, int] = {}
    for i, position in enumerate(slot):
        if position is None:
            continue
        held = keeper.get(position)
        if held is None:
            keeper[position] = i
        elif rank(i) < rank(held):
            keeper[position] = i
            intruders[held] = position
        else:
            intruders[i] = position
    return keeper, intruders


def _intruder_message(items: list[LedgerEntry], seen: list[_Seen], i: int, held: int,
                      position: int) -> str:
    e, other = items[i], items[held]
    if e == other:
        why = "a second copy of it"
    elif not seen[i].signed:
        why = "not signed by the hub"
    elif not seen[i].content_ok:
        why = "changed: its fields do not match its hash"
    else:
        why = "signed by the hub, but the chain goes on from the other (a fork)"
    stored = "" if other.seq == position else f" (stored as {other.seq})"
    return (f"entry {e.seq} is an extra entry: position {position} already holds the hub's "
            f"entry{stored}; this one is {why}")


def _out_of_order(items: list[LedgerEntry], slot: list[int | None],
                  keeper: dict[int, int]) -> dict[int, str]:
    """Entries stored out of order: those off a longest increasing run of positions
    (the fewest entries whose moving explains the order)."""
    order = [i for i, position in enumerate(slot)
             if position is not None and keeper.get(position) == i]
    keys = [slot[i] for i in order]
    # Longest strictly increasing subsequence, O(n log n), with back-pointers.
    tails: list[int] = []  # index into order of the smallest tail of each length
    back: list[int] = [-1] * len(order)
    for n, key in enumerate(keys):
        at = _bisect_tails(keys, tails, key)
        back[n] = tails[at - 1] if at else -1
        if at == len(tails):
            tails.append(n)
        else:
            tails[at] = n
    keep = set()
    n = tails[-1] if tails else -1
    while n >= 0:
        keep.add(n)
        n = back[n]
    found: dict[int, str] = {}
    for n, i in enumerate(order):
        if n in keep:
            continue
        before = items[order[n - 1]].seq if n else None
        after = items[order[n + 1]].seq if n + 1 < len(order) else None
        around = " and ".join(f"{w} entry {s}" for w, s in (("after", before), ("before", after))
                              if s is not None)
        found[i] = f"entry {items[i].seq} is stored out of order ({around})"
    return found


def _bisect_tails(keys: list[int], tails: list[int], key: int) -> int:
    lo, hi = 0, len(tails)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[tails[mid]] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _gaps(present: list[int]) -> Iterable[tuple[int, int]]:
    expected = 1
    for position in present:
        if position > expected:
            yield expected, position - 1
        expected = position + 1


def _names_an_entry(head: LedgerHead | str) -> bool:
    # The head of an empty ledger (seq 0, the genesis hash) promises nothing.
    if isinstance(head, LedgerHead):
        return head.seq > 0
    return head != GENESIS_HASH


def _check_head(items: list[LedgerEntry], seen: list[_Seen], trusted: dict[int, int],
                last: int, head: LedgerHead | str, report) -> None:
    """Report a recorded head the ledger no longer reaches (``trusted``: the genuine
    entry at each position; a damaged one there is reported already)."""
    if isinstance(head, str):
        if not any(s.signed and e.entry_hash == head for e, s in zip(items, seen, strict=True)):
            report(-1, "ledger.truncated", last + 1,
                   f"the recorded head {head[:16]}… is no longer in the ledger: entries "
                   f"after {last} were deleted or replaced" if last else
                   f"the recorded head {head[:16]}… is no longer in the ledger: it is empty")
        return
    if head.seq > last:
        span = (f"entry {head.seq} was" if head.seq == last + 1
                else f"entries {last + 1}–{head.seq} were")
        report(-1, "ledger.truncated", last + 1,
               f"{span} deleted from the end: the recorded head is entry {head.seq}")
        return
    i = trusted.get(head.seq)
    if i is not None and items[i].entry_hash != head.entry_hash:
        report(i, "ledger.truncated", head.seq,
               f"entry {head.seq} is not the recorded head {head.entry_hash[:16]}…: the "
               "ledger was cut back and rewritten from there")


# ============================================================ receipts vs ledger ======

# A receipt row's time is stamped by the hub's clock when the receipt is planned, the
# signed receipt's IssuedAt when it is made: the same moment, give or take the batch.
RECEIPT_CLOCK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt as the receipts table holds it (what ``vdx receipts query`` shows)."""

    receipt_id: str
    kind: str
    addressee: str
    document_id: str | None
    recipient: str | None
    delivery_id: str | None
    error_code: str | None
    status_code: str | None
    created_at: datetime
    body: bytes


class ReceiptAudit:
    """Checks the receipts table against the ledger, one row at a time (rows stream from
    the database in any order), then reports the receipts that are gone.

    Each row must match the genuine ledger entry of its receipt id: its kind, addressee
    (the entry's ``sender``), document and recipient are the entry's, its body is the
    signed receipt whose SHA-256 the entry recorded, and what the row says beside those
    (delivery id, error code, status code, time) is what that signed receipt says.
    Reported: ``ledger.receipt_mismatch`` at the entry's position, with every field that
    differs; ``ledger.receipt_missing`` for an entry whose row is gone;
    ``ledger.receipt_unrecorded`` (no position) for a row no ledger entry records. A row
    whose entry is damaged is left out: the chain's own problem reports that entry.
    """

    def __init__(self, genuine: Iterable[LedgerEntry], recorded: Iterable[str | None]) -> None:
        """``genuine``: :attr:`ChainAudit.genuine`; ``recorded``: the receipt id of every
        stored entry, damaged ones included."""
        self._expected = {e.receipt_id: e for e in genuine if e.receipt_id is not None}
        self._damaged = set(recorded) - set(self._expected)
        self._problems: list[LedgerProblem] = []
        self.checked = 0

    def check(self, row: StoredReceipt) -> None:
        self.checked += 1
        entry = self._expected.pop(row.receipt_id, None)
        if entry is None:
            if row.receipt_id not in self._damaged:
                self._problems.append(LedgerProblem(
                    "ledger.receipt_unrecorded", None,
                    f"receipt {row.receipt_id} ({row.kind} to {row.addressee}) is in no "
                    "ledger entry: the hub did not issue it"))
            return
        differences = _receipt_differences(row, entry)
        if differences:
            self._problems.append(LedgerProblem(
                "ledger.receipt_mismatch", entry.seq,
                f"receipt {row.receipt_id} differs from entry {entry.seq}: "
                + "; ".join(differences)))

    def finish(self) -> list[LedgerProblem]:
        """Every problem found, ordered by position (rows in no entry last)."""
        for entry in self._expected.values():
            self._problems.append(LedgerProblem(
                "ledger.receipt_missing", entry.seq,
                f"entry {entry.seq} records receipt {entry.receipt_id} ({entry.kind} to "
                f"{entry.sender}), which is missing from the receipts table"))
        self._expected.clear()
        return sorted(self._problems,
                      key=lambda p: (p.seq is None, p.seq or 0, p.code, p.message))


def _receipt_differences(row: StoredReceipt, entry: LedgerEntry) -> list[str]:
    found = [f"{name} is {got!r} where the ledger has {want!r}" for name, got, want in (
        ("kind", row.kind, entry.kind), ("addressee", row.addressee, entry.sender),
        ("document_id", row.document_id, entry.document_id),
        ("recipient", row.recipient, entry.recipient)) if got != want]
    if not isinstance(row.body, bytes) or \
            hashlib.sha256(row.body).hexdigest() != entry.receipt_sha256:
        found.append("its body is not the signed receipt the ledger recorded "
                     "(SHA-256 differs)")
        return found
    try:
        signed = parse_receipt(row.body)
    except VdxError as exc:  # the hub recorded a body it cannot read back: say so
        found.append(f"its recorded body is not a readable receipt ({exc.code})")
        return found
    found += [f"{name} is {got!r} where the signed receipt has {want!r}" for name, got, want in (
        ("receipt id", row.receipt_id, signed.receipt_id),
        ("delivery_id", row.delivery_id, signed.delivery_id),
        ("error_code", row.error_code, signed.error_code),
        ("status_code", row.status_code, signed.status_code)) if got != want]
    if not isinstance(row.created_at, datetime) or row.created_at.utcoffset() is None \
            or abs(row.created_at - signed.issued_at) > RECEIPT_CLOCK_SLACK:
        found.append(f"created_at is {row.created_at} where the signed receipt was issued "
                     f"at {format_utc(signed.issued_at)}")
    return found
