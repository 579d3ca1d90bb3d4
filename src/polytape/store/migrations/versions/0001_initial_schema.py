"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import polytape.store.schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "event_tags",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("tag_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "tag_id", name=op.f("pk_event_tags")),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("slug", sa.String(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("closed", sa.Boolean(), nullable=True),
        sa.Column("neg_risk", sa.Boolean(), nullable=True),
        sa.Column("neg_risk_market_id", sa.String(), nullable=True),
        sa.Column("start_date", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_date", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("volume", sa.Double(), nullable=True),
        sa.Column("liquidity", sa.Double(), nullable=True),
        sa.Column("first_seen_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    op.create_table(
        "job_runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("job_name", sa.String(length=64), nullable=False),
        sa.Column("started_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("rows_written", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index("ix_job_runs_job_name_started_at", ["job_name", "started_at"], unique=False)

    op.create_table(
        "market_metrics_ts",
        sa.Column("condition_id", sa.String(), nullable=False),
        sa.Column("ts", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("open_interest", sa.Double(), nullable=True),
        sa.Column("mid_price", sa.Double(), nullable=True),
        sa.Column("last_trade_price", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("condition_id", "ts", name=op.f("pk_market_metrics_ts")),
    )
    op.create_table(
        "market_tags",
        sa.Column("condition_id", sa.String(), nullable=False),
        sa.Column("tag_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("condition_id", "tag_id", name=op.f("pk_market_tags")),
    )
    op.create_table(
        "market_tokens",
        sa.Column("token_id", sa.String(), nullable=False),
        sa.Column("condition_id", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("outcome_index", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_market_tokens")),
    )
    with op.batch_alter_table("market_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_market_tokens_condition_id"), ["condition_id"], unique=False)

    op.create_table(
        "markets",
        sa.Column("condition_id", sa.String(), nullable=False),
        sa.Column("gamma_market_id", sa.String(), nullable=True),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.Column("question_id", sa.String(), nullable=True),
        sa.Column("slug", sa.String(), nullable=True),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column(
            "outcomes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "outcome_prices",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "clob_token_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("gamma_volume", sa.Double(), nullable=True),
        sa.Column("gamma_liquidity", sa.Double(), nullable=True),
        sa.Column("neg_risk", sa.Boolean(), nullable=True),
        sa.Column("neg_risk_source", sa.String(length=8), nullable=True),
        sa.Column("neg_risk_market_id", sa.String(), nullable=True),
        sa.Column("enable_order_book", sa.Boolean(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("closed", sa.Boolean(), nullable=True),
        sa.Column("accepting_orders", sa.Boolean(), nullable=True),
        sa.Column("tick_size", sa.Double(), nullable=True),
        sa.Column("min_order_size", sa.Double(), nullable=True),
        sa.Column("end_date", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("condition_id", name=op.f("pk_markets")),
        sa.UniqueConstraint("gamma_market_id", name=op.f("uq_markets_gamma_market_id")),
    )
    with op.batch_alter_table("markets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_markets_event_id"), ["event_id"], unique=False)

    op.create_table(
        "orderbook_levels",
        sa.Column("token_id", sa.String(), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("size", sa.Double(), nullable=False),
        sa.Column("updated_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id", "side", "price", name=op.f("pk_orderbook_levels")),
    )
    op.create_table(
        "orderbooks",
        sa.Column("token_id", sa.String(), nullable=False),
        sa.Column("condition_id", sa.String(), nullable=True),
        sa.Column("book_ts", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("hash", sa.String(), nullable=True),
        sa.Column("hash_status", sa.String(length=12), nullable=True),
        sa.Column("tick_size", sa.Double(), nullable=True),
        sa.Column("min_order_size", sa.Double(), nullable=True),
        sa.Column("neg_risk", sa.Boolean(), nullable=True),
        sa.Column("best_bid", sa.Double(), nullable=True),
        sa.Column("best_ask", sa.Double(), nullable=True),
        sa.Column("last_trade_price", sa.Double(), nullable=True),
        sa.Column("source", sa.String(length=4), nullable=False),
        sa.Column("updated_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("snapshot_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_orderbooks")),
    )
    with op.batch_alter_table("orderbooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orderbooks_condition_id"), ["condition_id"], unique=False)

    op.create_table(
        "rejected_payloads",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("received_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_payloads")),
    )
    with op.batch_alter_table("rejected_payloads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rejected_payloads_received_at"), ["received_at"], unique=False)

    op.create_table(
        "signal_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("dedupe_key", sa.String(), nullable=False),
        sa.Column("signal_type", sa.String(length=32), nullable=False),
        sa.Column("condition_id", sa.String(), nullable=True),
        sa.Column("token_id", sa.String(), nullable=True),
        sa.Column("detected_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_signal_events_dedupe_key")),
    )
    with op.batch_alter_table("signal_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signal_events_detected_at"), ["detected_at"], unique=False)

    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("updated_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "tags",
        sa.Column("tag_id", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("slug", sa.String(), nullable=True),
        sa.Column("is_sport", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tag_id", name=op.f("pk_tags")),
    )
    op.create_table(
        "tracked_markets",
        sa.Column("condition_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("selected_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("condition_id", name=op.f("pk_tracked_markets")),
    )
    op.create_table(
        "trades",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("dedupe_key", sa.String(), nullable=False),
        sa.Column("transaction_hash", sa.String(), nullable=True),
        sa.Column("wallet", sa.String(), nullable=True),
        sa.Column("condition_id", sa.String(), nullable=False),
        sa.Column("token_id", sa.String(), nullable=True),
        sa.Column("side", sa.String(length=4), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("outcome_index", sa.Integer(), nullable=True),
        sa.Column("size", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("usd_value", sa.Double(), nullable=False),
        sa.Column("trade_ts", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("ingested_at", polytape.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_trades_dedupe_key")),
    )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index("ix_trades_condition_id_trade_ts", ["condition_id", "trade_ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_trades_trade_ts"), ["trade_ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_trades_transaction_hash"), ["transaction_hash"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trades_transaction_hash"))
        batch_op.drop_index(batch_op.f("ix_trades_trade_ts"))
        batch_op.drop_index("ix_trades_condition_id_trade_ts")

    op.drop_table("trades")
    op.drop_table("tracked_markets")
    op.drop_table("tags")
    op.drop_table("sync_state")
    with op.batch_alter_table("signal_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signal_events_detected_at"))

    op.drop_table("signal_events")
    with op.batch_alter_table("rejected_payloads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rejected_payloads_received_at"))

    op.drop_table("rejected_payloads")
    with op.batch_alter_table("orderbooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orderbooks_condition_id"))

    op.drop_table("orderbooks")
    op.drop_table("orderbook_levels")
    with op.batch_alter_table("markets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_markets_event_id"))

    op.drop_table("markets")
    with op.batch_alter_table("market_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_market_tokens_condition_id"))

    op.drop_table("market_tokens")
    op.drop_table("market_tags")
    op.drop_table("market_metrics_ts")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_job_runs_job_name_started_at")

    op.drop_table("job_runs")
    op.drop_table("events")
    op.drop_table("event_tags")
