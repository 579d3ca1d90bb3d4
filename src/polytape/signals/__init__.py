"""Signals: pure rules over stored facts, the engine that runs them, and where they go.

``rules`` (pure), ``engine`` (reads the store or live books, writes ``signal_events``),
``sinks`` (webhook), ``cli`` (``polytape signals tail|list``).
"""

from polytape.signals.model import SIGNAL_TYPES, RuleConfig, Signal

__all__ = ["SIGNAL_TYPES", "RuleConfig", "Signal"]
