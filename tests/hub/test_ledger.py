"""The hash-chained ledger: hashing, signing, and every tamper case at its position."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from vdx.core.ledger import (
    GENESIS_HASH,
    HASH_DOMAIN,
    LedgerEntry,
    LedgerHead,
    compute_hash,
    entry_content,
    head_of,
    make_hash_signer,
    make_hash_verifier,
    next_entry,
    signing_input,
    verify_chain,
)
from vdx.errors import CATALOGUE

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys(rsa_key):
    return make_hash_signer(rsa_key), make_hash_verifier(rsa_key.public_key())


def build(sign, n: int = 10) -> list[LedgerEntry]:
    entries: list[LedgerEntry] = []
    for i in range(n):
        entries.append(next_entry(
            entries[-1] if entries else None, kind=("accepted", "delivered")[i % 2],
            document_id=f"000.00.00.G22,2026/11/22,{i}/VPCP", sender="000.00.00.G22",
            recipient=None if i % 2 == 0 else "000.00.00.H41",
            receipt_id=f"00000000-0000-4000-8000-{i:012d}",
            receipt_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
            created_at=T0 + timedelta(seconds=i), sign=sign,
        ))
    return entries


@pytest.fixture(scope="module")
def chain(keys):
    return build(keys[0])


def codes(problems) -> list[tuple[str, int | None]]:
    return [(p.code, p.seq) for p in problems]


def resign(entry: LedgerEntry, sign) -> LedgerEntry:
    """What only the hub can do: re-hash and re-sign an entry after changing it."""
    entry = replace(entry, entry_hash=compute_hash(entry))
    return replace(entry, hub_signature=sign(signing_input(entry.entry_hash)))


# ------------------------------------------------------------------- building

def test_chain_starts_at_genesis_and_links_every_entry(chain, keys):
    assert chain[0].seq == 1 and chain[0].prev_hash == GENESIS_HASH == "0" * 64
    for before, after in zip(chain, chain[1:], strict=False):
        assert after.seq == before.seq + 1 and after.prev_hash == before.entry_hash
    for e in chain:
        assert compute_hash(e) == e.entry_hash
        assert keys[1](signing_input(e.entry_hash), e.hub_signature)
    assert chain[0].created_at == "2026-11-22T03:00:00Z"
    assert verify_chain(chain, keys[1]) == []


def test_entry_content_is_canonical_json_in_a_fixed_order():
    content = entry_content(7, "status", None, "A", "", "r", "s", "2026-01-01T00:00:00Z", "p")
    assert content == (b'["vdx-ledger-entry/1",7,"status",null,"A","","r","s",'
                       b'"2026-01-01T00:00:00Z","p"]')
    assert json.loads(content)[0] == HASH_DOMAIN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.text(max_size=12), min_size=5, max_size=5),
       st.lists(st.none() | st.text(max_size=12), min_size=5, max_size=5))
def test_different_fields_never_share_an_encoding(a, b):
    # The property the hash rests on: the encoding is injective, so no two entries can be
    # made to hash alike by moving characters between fields or swapping null and "".
    enc = lambda f: entry_content(1, "k", *f, "t", "p")  # noqa: E731
    assert (enc(a) == enc(b)) == (a == b)


def test_non_ascii_text_hashes_by_its_exact_characters():
    nfc, nfd = "TTĐT Hà Nội", "TTĐT Ha\u0300 Nội"
    assert entry_content(1, "k", nfc, None, None, None, None, "t", "p").isascii()
    assert entry_content(1, "k", nfc, None, None, None, None, "t", "p") != \
        entry_content(1, "k", nfd, None, None, None, None, "t", "p")


def test_next_entry_normalises_time_and_refuses_bad_input(keys):
    local = T0.astimezone(timezone(timedelta(hours=7)))
    assert next_entry(None, kind="accepted", created_at=local, sign=keys[0]).created_at == \
        "2026-11-22T03:00:00Z"
    canonical = "2026-11-22T03:00:00.500000Z"
    assert next_entry(None, kind="x", created_at=canonical, sign=keys[0]).created_at == canonical
    # Text is hashed as given, so only the one canonical spelling of a time is accepted.
    for bad in ("2026-11-22 03:00:00", "2026-11-22T03:00:00+07:00", "2026-11-22T03:00:00.5Z"):
        with pytest.raises(ValueError):
            next_entry(None, kind="x", created_at=bad, sign=keys[0])
    with pytest.raises(ValueError):
        next_entry(None, kind="x", created_at=datetime(2026, 1, 1), sign=keys[0])
    with pytest.raises(ValueError):
        next_entry(None, kind="", sign=keys[0])


def test_head_round_trips_as_text(chain):
    head = head_of(chain)
    assert head == LedgerHead(10, chain[-1].entry_hash)
    assert LedgerHead.parse(str(head)) == head
    assert head_of([]) is None
    with pytest.raises(ValueError):
        LedgerHead.parse("ten:abc")


# ------------------------------------------------------------------- keys

def _certificate(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "VDX TEST hub")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))


@pytest.mark.parametrize("make, options", [
    ("rsa", {"rsa_padding": "pss"}), ("rsa", {"rsa_padding": "pkcs1v15"}),
    ("ec", {}), ("ed25519", {}),
])
def test_signers_and_verifiers_agree_for_every_key_type(rsa_key, make, options):
    key = {"rsa": lambda: rsa_key, "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
           "ed25519": ed25519.Ed25519PrivateKey.generate}[make]()
    sign = make_hash_signer(key, **options)
    for verify in (make_hash_verifier(key.public_key(), **options),
                   make_hash_verifier(_certificate(key), **options)):
        entries = build(sign, 3)
        assert verify_chain(entries, verify) == []
        assert not verify(b"other", entries[0].hub_signature)
        assert not verify(signing_input(entries[0].entry_hash), b"garbage")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("padding_options", [[], ["-sigopt", "rsa_padding_mode:pss",
                                                   "-sigopt", "rsa_pss_saltlen:-1"]])
def test_an_auditor_checks_an_entry_signature_with_openssl(rsa_key, tmp_path, padding_options):
    key = ec.generate_private_key(ec.SECP256R1()) if not padding_options else rsa_key
    entry = build(make_hash_signer(key), 1)[0]
    (tmp_path / "hash.bin").write_bytes(bytes.fromhex(entry.entry_hash))
    (tmp_path / "sig.bin").write_bytes(entry.hub_signature)
    (tmp_path / "hub.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", "hub.pub", *padding_options,
                           "-signature", "sig.bin", "hash.bin"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "Verified OK" in done.stdout, done.stderr


def test_the_wrong_padding_does_not_verify(rsa_key):
    entries = build(make_hash_signer(rsa_key, rsa_padding="pss"), 1)
    wrong = make_hash_verifier(rsa_key.public_key(), rsa_padding="pkcs1v15")
    assert codes(verify_chain(entries, wrong)) == [("ledger.bad_signature", 1)]


def test_another_keys_signature_is_reported(chain):
    stranger = make_hash_verifier(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert codes(verify_chain(chain, stranger)) == [("ledger.bad_signature", s)
                                                    for s in range(1, 11)]


# ------------------------------------------------------------------- tampering

def test_edited_field_is_reported_at_its_position(chain, keys):
    tampered = list(chain)
    tampered[4] = replace(chain[4], recipient="000.00.00.H49")
    problems = verify_chain(tampered, keys[1])
    assert codes(problems) == [("ledger.edited", 5)]
    assert "entry 5 was changed" in problems[0].message


@pytest.mark.parametrize("field, value", [
    ("kind", "rejected"), ("document_id", None), ("sender", "000.00.00.G23"),
    ("receipt_id", "x"), ("receipt_sha256", "0" * 64), ("created_at", "2020-01-01T00:00:00Z"),
    ("prev_hash", "f" * 64),
])
def test_every_hashed_field_is_covered(chain, keys, field, value):
    tampered = list(chain)
    tampered[6] = replace(chain[6], **{field: value})
    assert codes(verify_chain(tampered, keys[1])) == [("ledger.edited", 7)]


def test_edit_then_rehash_without_the_key_is_a_bad_signature(chain, keys):
    tampered = list(chain)
    edited = replace(chain[4], recipient="000.00.00.H49")
    tampered[4] = replace(edited, entry_hash=compute_hash(edited))
    assert codes(verify_chain(tampered, keys[1])) == [("ledger.bad_signature", 5)]


def test_forged_signature_is_reported(chain, keys):
    tampered = list(chain)
    tampered[2] = replace(chain[2], hub_signature=chain[3].hub_signature)
    assert codes(verify_chain(tampered, keys[1])) == [("ledger.bad_signature", 3)]


def test_edited_hash_is_reported_once(chain, keys):
    tampered = list(chain)
    tampered[2] = replace(chain[2], entry_hash="a" * 64)
    assert codes(verify_chain(tampered, keys[1])) == [("ledger.edited", 3)]


def test_garbage_fields_are_reported_not_raised(chain, keys):
    tampered = list(chain)
    tampered[1] = replace(chain[1], entry_hash="not hex", hub_signature=b"")
    tampered[2] = replace(chain[2], kind=42)  # type: ignore[arg-type]
    assert codes(verify_chain(tampered, keys[1])) == [("ledger.edited", 2),
                                                      ("ledger.edited", 3)]


def test_deleted_middle_entry_is_reported_at_its_position(chain, keys):
    problems = verify_chain(chain[:4] + chain[5:], keys[1])
    assert codes(problems) == [("ledger.deleted", 5)]
    assert problems[0].message == "entry 5 is missing from the ledger"


def test_deleted_run_is_one_problem(chain, keys):
    problems = verify_chain(chain[:3] + chain[7:], keys[1])
    assert codes(problems) == [("ledger.deleted", 4)]
    assert "entries 4–7 are missing" in problems[0].message


def test_deleted_first_entries_are_reported(chain, keys):
    assert codes(verify_chain(chain[2:], keys[1])) == [("ledger.deleted", 1)]


def test_deleted_last_entry_needs_an_anchor(chain, keys):
    head = head_of(chain)
    # Without a recorded head, a cut-off tail is a perfect chain: nothing to see.
    assert verify_chain(chain[:-1], keys[1]) == []
    problems = verify_chain(chain[:-1], keys[1], expected_head=head)
    assert codes(problems) == [("ledger.truncated", 10)]
    assert "entry 10 was deleted from the end" in problems[0].message
    assert codes(verify_chain(chain[:-3], keys[1], expected_head=head)) == \
        [("ledger.truncated", 8)]
    assert codes(verify_chain(chain[:-1], keys[1], expected_head=head.entry_hash)) == \
        [("ledger.truncated", 10)]
    assert codes(verify_chain([], keys[1], expected_head=head)) == [("ledger.truncated", 1)]


def test_entries_appended_after_the_anchor_are_fine(chain, keys):
    assert verify_chain(chain, keys[1], expected_head=head_of(chain[:6])) == []
    assert verify_chain(chain, keys[1], expected_head=chain[5].entry_hash) == []


def test_the_genesis_head_of_an_empty_ledger_checks_nothing(chain, keys):
    for head in (GENESIS_HASH, LedgerHead(0, GENESIS_HASH)):
        assert verify_chain([], keys[1], expected_head=head) == []
        assert verify_chain(chain, keys[1], expected_head=head) == []


def test_rolled_back_and_rewritten_ledger_misses_its_anchor(chain, keys):
    # Someone with the hub's key (a restored backup, then new traffic) rewrote entry 8 on:
    # every entry is genuine, but the recorded head is gone.
    rewritten = chain[:7] + build_after(chain[6], keys[0], 3)
    assert verify_chain(rewritten, keys[1]) == []
    assert codes(verify_chain(rewritten, keys[1], expected_head=head_of(chain))) == \
        [("ledger.truncated", 10)]


def build_after(prev: LedgerEntry, sign, n: int) -> list[LedgerEntry]:
    out = []
    for _ in range(n):
        prev = next_entry(prev, kind="status", sender="X", created_at=T0, sign=sign)
        out.append(prev)
    return out


def test_inserted_forged_entry_is_reported(chain, keys):
    intruder = replace(chain[4], recipient="000.00.00.H49", hub_signature=b"\x00" * 256)
    intruder = replace(intruder, entry_hash=compute_hash(intruder))
    problems = verify_chain(chain[:5] + [intruder] + chain[5:], keys[1])
    assert codes(problems) == [("ledger.inserted", 5)]
    assert "not signed by the hub" in problems[0].message


def test_inserted_copy_is_reported(chain, keys):
    problems = verify_chain(chain[:5] + [chain[4]] + chain[5:], keys[1])
    assert codes(problems) == [("ledger.inserted", 5)]
    assert "second copy" in problems[0].message


def test_appended_forgery_is_reported(chain, keys):
    forged = next_entry(chain[-1], kind="delivered", created_at=T0, sign=lambda _: b"x" * 256)
    assert codes(verify_chain(chain + [forged], keys[1])) == [("ledger.bad_signature", 11)]


def test_inserted_in_the_middle_with_renumbering(chain, keys):
    # Make room at 6 by renumbering 6..10 to 7..11, then put a forged entry at 6.
    forged = replace(chain[5], kind="rejected", hub_signature=b"x")
    shifted = [replace(e, seq=e.seq + 1) for e in chain[5:]]
    problems = verify_chain(chain[:5] + [forged] + shifted, keys[1])
    assert codes(problems)[0] == ("ledger.inserted", 6)
    assert "not signed by the hub" in problems[0].message
    # The renumbered genuine entries are recognised as moved, each at its stored position.
    assert codes(problems)[1:] == [("ledger.reordered", s) for s in range(7, 12)]
    assert "is the hub's entry 6" in problems[1].message


def test_fork_signed_by_the_hub_is_reported(chain, keys):
    other = next_entry(chain[3], kind="duplicate", created_at=T0, sign=keys[0])
    problems = verify_chain(chain[:5] + [other] + chain[5:], keys[1])
    assert codes(problems) == [("ledger.inserted", 5)]
    assert "fork" in problems[0].message


def test_spliced_chain_breaks_the_link(chain, keys):
    stranger = build(keys[0], 10)  # same key, other content (another hub's copy)
    stranger = [replace(e, document_id="other") for e in stranger]
    stranger = rechain(stranger, keys[0])
    problems = verify_chain(chain[:5] + stranger[5:], keys[1])
    assert codes(problems) == [("ledger.broken_link", 6)]


def rechain(entries: list[LedgerEntry], sign) -> list[LedgerEntry]:
    out: list[LedgerEntry] = []
    for e in entries:
        prev = out[-1].entry_hash if out else GENESIS_HASH
        out.append(resign(replace(e, prev_hash=prev), sign))
    return out


def test_storage_reorder_is_reported_at_one_of_the_swapped_positions(chain, keys):
    swapped = list(chain)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    problems = verify_chain(swapped, keys[1])
    assert len(problems) == 1 and problems[0].code == "ledger.reordered"
    assert problems[0].seq in (4, 5)
    assert "out of order" in problems[0].message


def test_entry_moved_far_is_the_one_reported(chain, keys):
    moved = chain[1:] + chain[:1]  # entry 1 stored last
    assert codes(verify_chain(moved, keys[1])) == [("ledger.reordered", 1)]
    moved = chain[:2] + chain[3:] + chain[2:3]  # entry 3 stored last
    assert codes(verify_chain(moved, keys[1])) == [("ledger.reordered", 3)]


def test_swapped_seq_values_are_reported_as_reordered_at_both_positions(chain, keys):
    # What a database edit looks like when rows are read ORDER BY seq: two rows swap
    # their seq values, everything else intact.
    tampered = list(chain)
    tampered[3], tampered[4] = replace(chain[4], seq=4), replace(chain[3], seq=5)
    problems = verify_chain(tampered, keys[1])
    assert codes(problems) == [("ledger.reordered", 4), ("ledger.reordered", 5)]
    assert problems[0].message.startswith("the entry stored as 4 is the hub's entry 5")


@pytest.mark.parametrize("gone", [1, 3])
def test_deleted_then_renumbered_is_found_out(chain, keys, gone):
    # Delete entries 5.. and renumber the rest to close the gap: the chain links and the
    # signed hashes still tell where each entry came from.
    tampered = chain[:4] + [replace(e, seq=e.seq - gone) for e in chain[4 + gone:]]
    problems = verify_chain(tampered, keys[1])
    assert codes(problems) == [("ledger.deleted", 5)] + [
        ("ledger.reordered", s) for s in range(5, 11 - gone)]
    assert problems[1].message.startswith(f"the entry stored as 5 is the hub's entry {5 + gone}")


def test_many_problems_come_back_in_position_order(chain, keys):
    tampered = list(chain)
    tampered[8] = replace(chain[8], sender="X")
    del tampered[5]
    tampered[1] = replace(chain[1], hub_signature=b"")
    problems = verify_chain(tampered, keys[1], expected_head=LedgerHead(12, "b" * 64))
    assert codes(problems) == [("ledger.bad_signature", 2), ("ledger.deleted", 6),
                               ("ledger.edited", 9), ("ledger.truncated", 11)]
    for p in problems:
        d = p.to_dict()
        assert d["summary_vi"] == CATALOGUE[p.code].vi and d["seq"] == p.seq


def test_verify_chain_takes_any_iterable(chain, keys):
    assert verify_chain(iter(chain), keys[1]) == []
