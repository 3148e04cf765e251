"""What the tests share: running hubs, gateways, registries and PKIs, and the
signature kit."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent  # tests/, where corpus/ is
