"""VDX hub: validate, sign, verify and route Vietnam's national edXML packages.

Role folders: ``core`` (the pure envelope, schema, identifiers, routing, receipts and
ledger), ``xmldsig`` (signatures), ``broker``, ``registry``, ``hub``, ``client`` (the
SDK) and ``commands`` (the CLI's groups). The core imports no broker, database or CLI
code; the IO edges live in their own modules.
"""

from __future__ import annotations

from vdx.core.envelope import Verdict, build, check, parse
from vdx.core.model import (
    Attachment,
    DocumentPackage,
    Organization,
    StatusPackage,
)
from vdx.core.xmlsafe import ParseLimits
from vdx.errors import (
    CATALOGUE,
    EnvelopeError,
    Problem,
    RegistryError,
    RoutingError,
    SignatureError,
    TransportError,
    VdxError,
)

__version__ = "0.1.0"

# The SDK's entry points, imported on first use: `import vdx` for the envelope core must
# not pull in pika, cryptography's X.509 verifier or the signer.
_LAZY = {
    "NodeClient": "vdx.client.node", "Delivery": "vdx.client.node",
    "Signer": "vdx.xmldsig.sign", "TrustStore": "vdx.xmldsig.trust",
    "Verifier": "vdx.xmldsig.verify",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vdx' has no attribute {name!r}")

__all__ = [
    "CATALOGUE", "Attachment", "DocumentPackage", "EnvelopeError", "Organization",
    "ParseLimits", "Problem", "RegistryError", "RoutingError", "SignatureError",
    "StatusPackage", "TransportError", "VdxError", "Verdict", "build", "check", "parse",
    "NodeClient", "Delivery", "Signer", "TrustStore", "Verifier",
]
