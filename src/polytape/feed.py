"""The WebSocket book feed's public entry points (the implementation is :mod:`polytape.bookfeed`)."""

from polytape.bookfeed import BookFeed, run_feed

__all__ = ["BookFeed", "run_feed"]
