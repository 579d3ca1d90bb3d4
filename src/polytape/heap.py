"""Keeping the process's heap from holding on to freed memory (glibc only; a no-op elsewhere).

The book feed allocates in bursts across threads (start-up snapshots of the whole venue,
flush batches built and written by worker threads, REST answers) and frees most of it
again. glibc gives each thread that allocates its own arena and keeps freed pages in it,
so RSS stays near the high-water mark of every thread at once. Measured here with twelve
threads churning 40 MB each: 531 MB resident after the work, 381 MB with two arenas,
140 MB after ``malloc_trim(0)``.

:func:`limit_arenas` (call it before threads start) caps the arenas at two;
:func:`trim` hands free pages back (the feed calls it every few seconds, off the loop).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (musl has neither)
        return None


_LIBC = _libc()


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (threads then share them); False where unavailable."""
    return _LIBC is not None and bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap pages back to the operating system; False where unavailable."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True
