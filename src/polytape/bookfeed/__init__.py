"""The live order-book feed over the CLOB market channel (see :mod:`polytape.bookfeed.service`)."""

from polytape.bookfeed.service import BookFeed, run_feed

__all__ = ["BookFeed", "run_feed"]
