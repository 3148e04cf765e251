"""PostgreSQL stores package bodies as they are, without trying to compress them.

A package is mostly base64 (its attachments), which pglz cannot shrink by the quarter it
requires; but its XML head compresses, so pglz does not give up after the first
kilobyte, as it does on data that never compresses: it compressed every body to the end,
then threw the result away. That was 13 ms of the server's CPU per MiB of package,
twice what storing it costs (a 20 MiB package: 358 ms for the INSERT, 85 ms without).
``STORAGE EXTERNAL`` keeps bodies out of line, uncompressed. Existing rows stay as
they are; new ones are stored so. SQLite never compresses: nothing to do there.

Revision ID: 0011_body_storage
Revises: 0010_console
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011_body_storage"
down_revision = "0010_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTENDED")
