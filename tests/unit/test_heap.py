"""polytape.heap: freed memory of many threads goes back to the OS (child processes: RSS
is per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import sys
from concurrent.futures import ThreadPoolExecutor
from polytape import heap

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

KEPT = []

def work(_):  # 40 MB of 2 kB blocks per task; a few survivors pin pages all over the heaps
    blocks = [bytes(2000) + bytes([j % 256]) for j in range(20_000)]
    KEPT.extend(blocks[::200])

if sys.argv[1] == "limit":
    assert heap.limit_arenas()
with ThreadPoolExecutor(12) as ex:
    for _ in range(10):
        list(ex.map(work, range(12)))
before = rss_mb()
assert heap.trim()
print(before, rss_mb())
"""


def _run(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    return before, after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_trim_and_arena_limit_give_freed_memory_back() -> None:
    before, after = _run("plain")
    assert after <= before - 100, (before, after)  # trim: free pages of every arena returned
    limited, _ = _run("limit")
    assert limited <= before - 50, (limited, before)  # two arenas hold less than twelve
