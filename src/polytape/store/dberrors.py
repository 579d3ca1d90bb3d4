"""Telling database errors apart: transient (retry) or permanent (fail at once).

A PostgreSQL restart, a dropped connection or a busy SQLite file pass if we wait;
a read-only file, a full disk, a missing table, database or role do not, and
retrying them for minutes only hides them. Every foreign error leaves the store
as one of :class:`DatabaseUnavailable` or :class:`DatabaseRefused`, with a
one-line message that names the problem.
"""

from __future__ import annotations

import sqlalchemy as sa

from polytape.errors import DatabaseRefused, DatabaseUnavailable, StoreError

# SQLite says these when waiting will not help.
_SQLITE_PERMANENT = (
    "readonly database",
    "read-only",
    "database or disk is full",
    "disk i/o error",
    "no such table",
    "no such column",
    "unable to open database file",
    "file is not a database",
    "database disk image is malformed",
)
# PostgreSQL SQLSTATE classes and codes that waiting will not fix.
_PG_PERMANENT_CLASSES = ("22", "23", "28", "3D", "3F", "42", "44")
_PG_PERMANENT_CODES = ("25006", "53100", "54000")  # read-only transaction, disk full, limit exceeded


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state else None


def first_line(exc: BaseException) -> str:
    """The foreign error's own message, first line only."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    line = text.splitlines()[0].strip()
    return line.removeprefix("connection failed: ")


def is_unique_violation(exc: BaseException) -> bool:
    """True for PostgreSQL's unique violation: a writer outside polytape's locks raced us."""
    return _sqlstate(exc) == "23505"


def is_permanent(exc: BaseException) -> bool:
    """True when retrying ``exc`` cannot help."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, sa.exc.NoSuchTableError | sa.exc.ArgumentError)
    if isinstance(exc, sa.exc.ProgrammingError | sa.exc.IntegrityError | sa.exc.DataError):
        return True
    state = _sqlstate(exc)
    if state is not None:
        return state.startswith(_PG_PERMANENT_CLASSES) or state in _PG_PERMANENT_CODES
    text = str(getattr(exc, "orig", exc)).lower()
    if any(marker in text for marker in _SQLITE_PERMANENT):
        return True
    # psycopg cannot connect: the server answered, so the name or the role is wrong.
    return "does not exist" in text or "authentication failed" in text or "no password supplied" in text


def translate(exc: BaseException, doing: str) -> StoreError:
    """``exc`` as :class:`DatabaseRefused` (permanent) or :class:`DatabaseUnavailable`."""
    message = f"database {doing} failed: {first_line(exc)}"
    if is_permanent(exc):
        return DatabaseRefused(message)
    return DatabaseUnavailable(message)
