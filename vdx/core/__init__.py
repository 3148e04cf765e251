"""The pure core: the edXML envelope and its model, identifiers, the hardened parser, the
schema, routing decisions, receipts and the ledger. Imports no broker, database, HTTP or
CLI code: plain values in, plain values out."""
