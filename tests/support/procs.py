"""The environment of a ``polytape`` subprocess: this one's, minus any ``POLYTAPE_*``."""

from __future__ import annotations

import os


def polytape_env(*, minimal: bool = False, **extra: str) -> dict[str, str]:
    """Environment for ``python -m polytape``: no inherited ``POLYTAPE_*`` setting (strict
    settings refuse unknown ones) plus ``extra``; ``minimal`` keeps only ``PATH``."""
    if minimal:
        base = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    else:
        base = {k: v for k, v in os.environ.items() if not k.startswith("POLYTAPE_")}
    return {**base, **extra}
