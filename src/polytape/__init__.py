"""polytape: record Polymarket's public market data into your own database."""

__version__ = "0.1.0"
