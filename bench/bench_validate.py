"""Validate time per package, next to raw libxml2 validation of the same bytes.

    python bench/bench_validate.py [--json FILE]

The hub's hot path (``vdx.core.envelope.load_tree``: limits, hardened parse, root, libxml2
schema) is compared with the bare minimum libxml2 needs for the same verdict
(``etree.fromstring`` + ``XMLSchema.validate``), in the same process and run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import document_of_size, fmt_us, per_call  # noqa: E402
from vdx import parse
from vdx.core import (
    envelope,
    schema,  # noqa: E402
)


def measure(size: int) -> dict[str, float]:
    data = document_of_size(size)
    xsd = etree.XMLSchema(etree.parse(str(schema.schema_path())))
    raw_parser = etree.XMLParser(huge_tree=True)

    def raw() -> None:
        assert xsd.validate(etree.fromstring(data, raw_parser).getroottree())

    return {
        "bytes": len(data),
        "libxml2_raw_s": per_call(raw),
        "hub_validate_s": per_call(lambda: envelope.load_tree(data)),
        "hub_parse_model_s": per_call(lambda: parse(data)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    rows = {label: measure(size) for label, size in (("10 KB", 10_000), ("1 MiB", 1 << 20))}
    print(f"{'package':<8} {'bytes':>10} {'libxml2 raw':>14} {'hub validate':>14} "
          f"{'ratio':>6} {'parse to model':>15}")
    for label, r in rows.items():
        print(f"{label:<8} {r['bytes']:>10,} {fmt_us(r['libxml2_raw_s']):>14} "
              f"{fmt_us(r['hub_validate_s']):>14} "
              f"{r['hub_validate_s'] / r['libxml2_raw_s']:>5.2f}x "
              f"{fmt_us(r['hub_parse_model_s']):>15}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
