"""trades: one unique index on (trade_ts, dedupe_key) instead of dedupe_key and trade_ts

A trade's ``dedupe_key`` is a digest that includes its trade time, so the same key always
comes with the same ``trade_ts`` and ``UNIQUE (trade_ts, dedupe_key)`` admits exactly what
``UNIQUE (dedupe_key)`` admitted. Led by the time, the index takes a page of trades (the
feeds serve them by time) into a few neighbouring leaf pages instead of one random page per
row, and it serves every query of the old ``trade_ts`` index, which goes. No row changes
(SQLite copies the table once to drop the old constraint).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_trades_trade_ts_dedupe_key", ["trade_ts", "dedupe_key"])
        batch_op.drop_constraint("uq_trades_dedupe_key", type_="unique")
        batch_op.drop_index("ix_trades_trade_ts")


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index("ix_trades_trade_ts", ["trade_ts"], unique=False)
        batch_op.create_unique_constraint("uq_trades_dedupe_key", ["dedupe_key"])
        batch_op.drop_constraint("uq_trades_trade_ts_dedupe_key", type_="unique")
