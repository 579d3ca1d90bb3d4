"""The schema: every table of architecture.md as SQLAlchemy Core tables.

Table and key column names are a contract (architecture.md "Data model").
Times are timezone-aware UTC in Python; prices and sizes are doubles.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python on every engine (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if when.tzinfo is None:
            return when.replace(tzinfo=UTC)
        return when.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Num = sa.Double


def _ts(name: str, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime(), **kw)


events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String, primary_key=True),
    sa.Column("slug", sa.String),
    sa.Column("title", sa.Text),
    sa.Column("active", sa.Boolean),
    sa.Column("closed", sa.Boolean),
    sa.Column("neg_risk", sa.Boolean),
    sa.Column("neg_risk_market_id", sa.String),
    _ts("start_date"),
    _ts("end_date"),
    sa.Column("volume", Num),
    sa.Column("liquidity", Num),
    _ts("first_seen_at", nullable=False),
    _ts("updated_at", nullable=False),
)

markets = sa.Table(
    "markets",
    metadata,
    sa.Column("condition_id", sa.String, primary_key=True),
    sa.Column("gamma_market_id", sa.String, unique=True),
    sa.Column("event_id", sa.String, index=True),
    sa.Column("question_id", sa.String),
    sa.Column("slug", sa.String),
    sa.Column("question", sa.Text),
    sa.Column("outcomes", JSONType),
    sa.Column("outcome_prices", JSONType),
    sa.Column("clob_token_ids", JSONType),
    sa.Column("gamma_volume", Num),
    sa.Column("gamma_liquidity", Num),
    sa.Column("neg_risk", sa.Boolean),
    sa.Column("neg_risk_source", sa.String(8)),
    sa.Column("neg_risk_market_id", sa.String),
    sa.Column("enable_order_book", sa.Boolean),
    sa.Column("active", sa.Boolean),
    sa.Column("closed", sa.Boolean),
    sa.Column("accepting_orders", sa.Boolean),
    sa.Column("tick_size", Num),
    sa.Column("min_order_size", Num),
    _ts("end_date"),
    _ts("first_seen_at", nullable=False),
    _ts("updated_at", nullable=False),
)

market_tokens = sa.Table(
    "market_tokens",
    metadata,
    sa.Column("token_id", sa.String, primary_key=True),
    sa.Column("condition_id", sa.String, nullable=False, index=True),
    sa.Column("outcome", sa.String),
    sa.Column("outcome_index", sa.Integer),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("tag_id", sa.String, primary_key=True),
    sa.Column("label", sa.String),
    sa.Column("slug", sa.String),
    sa.Column("is_sport", sa.Boolean, nullable=False, server_default=sa.false()),
    _ts("updated_at"),
)

event_tags = sa.Table(
    "event_tags",
    metadata,
    sa.Column("event_id", sa.String, primary_key=True),
    sa.Column("tag_id", sa.String, primary_key=True),
)

market_tags = sa.Table(
    "market_tags",
    metadata,
    sa.Column("condition_id", sa.String, primary_key=True),
    sa.Column("tag_id", sa.String, primary_key=True),
)

tracked_markets = sa.Table(
    "tracked_markets",
    metadata,
    sa.Column("condition_id", sa.String, primary_key=True),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("rank", sa.Integer),
    sa.Column("score", Num),
    _ts("selected_at", nullable=False),
)

market_metrics_ts = sa.Table(
    "market_metrics_ts",
    metadata,
    sa.Column("condition_id", sa.String, primary_key=True),
    _ts("ts", primary_key=True),
    sa.Column("open_interest", Num),
    sa.Column("mid_price", Num),
    sa.Column("last_trade_price", Num),
)

trades = sa.Table(
    "trades",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String, nullable=False),
    sa.Column("transaction_hash", sa.String),
    sa.Column("wallet", sa.String),
    sa.Column("condition_id", sa.String, nullable=False),
    sa.Column("token_id", sa.String),
    sa.Column("side", sa.String(4)),
    sa.Column("outcome", sa.String),
    sa.Column("outcome_index", sa.Integer),
    sa.Column("size", Num, nullable=False),
    sa.Column("price", Num, nullable=False),
    sa.Column("usd_value", Num, nullable=False),
    _ts("trade_ts", nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    _ts("ingested_at", nullable=False),
    # The key is a digest that includes the trade time, so this is uniqueness by key; led
    # by the time, a page of trades lands in a few neighbouring index pages (and time range
    # queries use it too).
    sa.UniqueConstraint("trade_ts", "dedupe_key"),
    sa.Index("ix_trades_condition_id_trade_ts", "condition_id", "trade_ts"),
)

orderbooks = sa.Table(
    "orderbooks",
    metadata,
    sa.Column("token_id", sa.String, primary_key=True),
    sa.Column("condition_id", sa.String, index=True),
    _ts("book_ts"),
    sa.Column("hash", sa.String),
    sa.Column("hash_status", sa.String(12)),
    sa.Column("tick_size", Num),
    sa.Column("min_order_size", Num),
    sa.Column("neg_risk", sa.Boolean),
    sa.Column("best_bid", Num),
    sa.Column("best_ask", Num),
    sa.Column("last_trade_price", Num),
    sa.Column("source", sa.String(4), nullable=False),
    _ts("updated_at", nullable=False),
    _ts("snapshot_at"),
)

orderbook_levels = sa.Table(
    "orderbook_levels",
    metadata,
    sa.Column("token_id", sa.String, primary_key=True),
    sa.Column("side", sa.String(4), primary_key=True),
    sa.Column("price", Num, primary_key=True),
    sa.Column("size", Num, nullable=False),
    _ts("updated_at", nullable=False),
    # SQLite: the rows live in the primary-key B-tree (migration 0007), not in a rowid table
    # plus a key index holding the same columns again: half the pages per flush.
    sqlite_with_rowid=False,
)

signal_events = sa.Table(
    "signal_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String, nullable=False, unique=True),
    sa.Column("signal_type", sa.String(32), nullable=False),
    sa.Column("condition_id", sa.String),
    sa.Column("token_id", sa.String),
    _ts("detected_at", nullable=False, index=True),
    sa.Column("score", Num),
    sa.Column("payload", JSONType),
)

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_name", sa.String(64), nullable=False),
    _ts("started_at", nullable=False),
    _ts("finished_at"),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("rows_written", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("details", JSONType),
    sa.Column("worker_id", sa.String(64)),  # the ``workers`` row of the process that ran it
    sa.Index("ix_job_runs_job_name_started_at", "job_name", "started_at"),
)

rejected_payloads = sa.Table(
    "rejected_payloads",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    _ts("received_at", nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text),
)

# Watermarks, cursors and feed heartbeats, written in the same transaction as the
# rows they cover (lessons.md #5).
sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", JSONType),
    _ts("updated_at", nullable=False),
)

# One row per signal (or digest) per alert channel: the delivery log. The unique
# (channel, dedupe_key) makes a signal go out at most once per channel, across
# restarts and workers.
alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("channel_name", sa.String(256), nullable=False),
    sa.Column("dedupe_key", sa.String, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("signal_id", sa.BigInteger),
    sa.Column("signal_type", sa.String(32)),
    sa.Column("market", sa.String),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    _ts("created_at", nullable=False, index=True),
    _ts("finished_at"),
    sa.UniqueConstraint("channel", "dedupe_key"),
)

# Every ``polytape run`` process: who it is and when it last said it was alive.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    _ts("started_at", nullable=False),
    _ts("heartbeat_at", nullable=False),
    _ts("stopped_at"),
    sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),  # -1: its feed is off
)

# Which worker records which token's book; the primary key makes two owners impossible.
token_leases = sa.Table(
    "token_leases",
    metadata,
    sa.Column("token_id", sa.String, primary_key=True),
    sa.Column("worker_id", sa.String(64), nullable=False, index=True),
    _ts("acquired_at", nullable=False),
    _ts("released_at"),  # set when the owner let go; the next owner records the gap since then
)
