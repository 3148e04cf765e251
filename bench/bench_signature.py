"""Sign and verify rates per core, next to bare signxml on the same bytes in the same run.

    python bench/bench_signature.py [--ec] [--seconds S] [--json FILE]

For 10 KB and 1 MiB document packages (RSA-2048 by default, ECDSA P-256 with ``--ec``):

* sign   — ``vdx.xmldsig.sign.Signer.sign(bytes)`` against bare signxml: ``etree.fromstring``
  + ``XMLSigner.sign`` (same algorithms, same placement) + ``etree.tostring``;
* verify — ``vdx.xmldsig.verify.Verifier.verify(tree)`` (what the hub runs after its envelope step
  parsed and validated the package) against bare signxml ``XMLVerifier.verify(bytes)``
  with the same pinned certificate; a third row shows ``Verifier.verify(bytes)``, which
  adds the envelope step (hardened parse + libxml2 schema) and is not signxml's job.

Candidates are timed in rounds: one burst of each, back to back, in CPU time
(``time.process_time``: other processes on a shared machine do not count), with the
garbage collector paused. Rates come from the best burst (one process is one core, so
rate = 1 / CPU time per call); the overhead is the median of the per-round ratios, which
cancels the drift a busy machine adds.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree
from signxml import SignatureConfiguration, XMLSigner, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, SignatureMethod

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import document_of_size  # noqa: E402
from vdx.core import envelope
from vdx.core.xmlsafe import EDXML_NS  # noqa: E402
from vdx.xmldsig import pki  # noqa: E402
from vdx.xmldsig.sign import DS_SIGNATURE, Signer, xml_parser  # noqa: E402
from vdx.xmldsig.verify import TrustStore, Verifier  # noqa: E402

SENDER = "000.00.00.G22"
_E = f"{{{EDXML_NS}}}"


@dataclass
class Timing:
    """Best CPU seconds per call of each candidate, and the median of its per-round
    ratio to the first candidate (rounds are adjacent, so drift cancels out)."""

    best: dict[str, float]
    ratio: dict[str, float]


def time_interleaved(candidates: dict[str, Callable[[], object]], seconds: float) -> Timing:
    for fn in candidates.values():
        fn()  # warm caches (parsers, schema, chain) before timing
    burst = {name: max(1, int(0.05 / _once(fn))) for name, fn in candidates.items()}
    rounds: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds
    gc.disable()  # as timeit does: a collection landing in one burst is noise
    try:
        while time.perf_counter() < deadline or len(rounds) < 5:
            per_call = {}
            for name, fn in candidates.items():
                n = burst[name]
                start = time.process_time()
                for _ in range(n):
                    fn()
                per_call[name] = (time.process_time() - start) / n
            rounds.append(per_call)
            gc.collect()
    finally:
        gc.enable()
    first = next(iter(candidates))
    return Timing(
        best={name: min(r[name] for r in rounds) for name in candidates},
        ratio={name: statistics.median(r[name] / r[first] for r in rounds)
               for name in candidates},
    )


def _once(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return max(time.process_time() - start, 1e-6)


def bare_sign(data: bytes, key, cert, algorithm: SignatureMethod) -> bytes:
    """What signxml alone needs for the same signature in the same place."""
    root = etree.fromstring(data, xml_parser())
    header = root.find(f"{_E}edXMLEnvelope/{_E}edXMLHeader")
    anchor = header.find(f"{_E}TraceHeaderList")
    if anchor is None:
        anchor = header.find(f"{_E}MessageHeader")
    anchor.addnext(etree.Element(DS_SIGNATURE, {"Id": "placeholder"}))
    signer = XMLSigner(signature_algorithm=algorithm,
                       c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signer._parser = xml_parser()  # as vdx.xmldsig.sign does: large attachments need huge_tree
    return etree.tostring(signer.sign(root, key=key, cert=[cert]))


def measure(size: int, use_ec: bool, seconds: float) -> dict[str, float]:
    root_key, root_cert = pki.create_root()
    crl = pki.build_crl(root_key, root_cert, {}, number=1)
    key, cert = pki.issue_agency_certificate(root_key, root_cert, SENDER, "Văn phòng Chính phủ",
                                             ec_key=use_ec)
    signer = Signer(key, cert)
    verifier = Verifier(TrustStore((root_cert,), crls=(crl,)))
    unsigned = document_of_size(size, sender=SENDER)
    signed = signer.sign(unsigned)
    tree = envelope.load_tree(signed)
    registered = {SENDER: (cert,)}.__getitem__
    config = SignatureConfiguration(location=f"./{_E}edXMLEnvelope/{_E}edXMLHeader/",
                                    expect_references=1)
    bare_verifier_parser = xml_parser()

    sign = time_interleaved({
        "bare": lambda: bare_sign(unsigned, key, cert, signer.algorithm),
        "hub": lambda: signer.sign(unsigned),
    }, seconds)
    verify = time_interleaved({
        "bare": lambda: XMLVerifier().verify(signed, x509_cert=cert, expect_config=config,
                                             parser=bare_verifier_parser),
        "hub": lambda: verifier.verify(tree, SENDER, registered),
        "hub_bytes": lambda: verifier.verify(signed, SENDER, registered),
    }, seconds)
    return {
        "bytes": len(signed),
        "sign_bare_s": sign.best["bare"], "sign_hub_s": sign.best["hub"],
        "sign_overhead": sign.ratio["hub"] - 1,
        "verify_bare_s": verify.best["bare"], "verify_hub_s": verify.best["hub"],
        "verify_overhead": verify.ratio["hub"] - 1,
        "verify_hub_bytes_s": verify.best["hub_bytes"],
        "verify_bytes_overhead": verify.ratio["hub_bytes"] - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ec", action="store_true", help="ECDSA P-256 instead of RSA-2048")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="timing budget per operation and size (default 3)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    rows = {label: measure(size, args.ec, args.seconds)
            for label, size in (("10 KB", 10_000), ("1 MiB", 1 << 20))}
    algorithm = "ECDSA P-256 / SHA-256" if args.ec else "RSA-2048 / SHA-256"
    print(f"{algorithm}, exclusive C14N, one core; rate = calls per second")
    print(f"{'package':<8} {'operation':<22} {'bare signxml':>13} {'vdx':>10} {'overhead':>9}")
    for label, r in rows.items():
        for op, key in (("sign(bytes)", "sign"), ("verify(tree)", "verify"),
                        ("verify(bytes)+envelope", "verify_bytes")):
            bare = r["sign_bare_s" if key == "sign" else "verify_bare_s"]
            hub = r[{"sign": "sign_hub_s", "verify": "verify_hub_s",
                     "verify_bytes": "verify_hub_bytes_s"}[key]]
            print(f"{label:<8} {op:<22} {1 / bare:>9,.0f} /s {1 / hub:>7,.0f} /s "
                  f"{r[key + '_overhead'] * 100:>+8.1f}%")
    print("overhead: median over interleaved rounds of (vdx time / bare signxml time) - 1")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
