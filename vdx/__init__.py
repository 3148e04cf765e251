"""VDX hub: validate, sign, verify and route Vietnam's national edXML packages.

The pure core (envelope, schema, identifiers, signatures, receipts) imports no broker,
database or CLI code; the IO edges live in their own modules.
"""

from __future__ import annotations

from .envelope import Verdict, build, check, parse
from .errors import (
    CATALOGUE,
    EnvelopeError,
    Problem,
    RegistryError,
    RoutingError,
    SignatureError,
    TransportError,
    VdxError,
)
from .model import (
    Attachment,
    DocumentPackage,
    Organization,
    StatusPackage,
)
from .xmlsafe import ParseLimits

__version__ = "0.1.0"

__all__ = [
    "CATALOGUE", "Attachment", "DocumentPackage", "EnvelopeError", "Organization",
    "ParseLimits", "Problem", "RegistryError", "RoutingError", "SignatureError",
    "StatusPackage", "TransportError", "VdxError", "Verdict", "build", "check", "parse",
]
