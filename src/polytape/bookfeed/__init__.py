"""The live order-book feed over the CLOB market channel.

:mod:`.service` (:class:`BookFeed`: connections, universe following, persistence),
:mod:`.keeper` (frames into book state, hash checks), :mod:`.healer` (REST snapshots for
suspect books), :mod:`.writer` (bounded-cadence writes), :mod:`.rest` (``POST /books``).
It publishes its books and hooks through :class:`polytape.runtime.Runtime`.

Imports: books, clients, config, errors, normalize, runtime, store (jobs for types only).
Never app, runner, cli or backfill.
"""

from polytape.bookfeed.service import BookFeed, run_feed

__all__ = ["BookFeed", "run_feed"]
