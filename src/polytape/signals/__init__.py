"""Signals: pure rules over stored facts and the engine that runs them.

``rules`` (pure), ``model`` (records, thresholds from the settings), ``inputs`` and
``bookcache`` (what a pass reads), ``live`` (live books and how current the feed says they
are), ``engine`` (reads the store or live books, writes ``signal_events``), ``format``
(one line per signal), ``news`` (what is recent enough to alert). Delivery is
:mod:`polytape.alerts`; ``polytape signals tail|list`` live in :mod:`polytape.cli`.
Imports: books, config, store; never jobs, app or cli.
"""

from polytape.signals.model import SIGNAL_TYPES, RuleConfig, Signal

__all__ = ["SIGNAL_TYPES", "RuleConfig", "Signal"]
