"""Issue 12 item 14: the SQLite single-run lock cannot be bypassed through another path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polytape.store import Store
from polytape.store.locks import AlreadyRunning, SqliteRunLock


@pytest.mark.parametrize("how", ["symlink", "relative", "dotted"])
def test_second_run_through_another_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    real = tmp_path / "data" / "polytape.db"
    real.parent.mkdir()
    first = Store.open(f"sqlite:///{real}")
    if how == "symlink":
        other = tmp_path / "link.db"
        other.symlink_to(real)
        url = f"sqlite:///{other}"
    elif how == "relative":
        monkeypatch.chdir(tmp_path)
        url = "sqlite:///data/polytape.db"
    else:
        url = f"sqlite:///{tmp_path}/data/../data/polytape.db"
    second = Store(url)
    lock = SqliteRunLock(first)
    lock.acquire()
    try:
        with pytest.raises(AlreadyRunning, match="another polytape run"):
            SqliteRunLock(second).acquire()
    finally:
        lock.release()
        first.close()
        second.close()
    again = SqliteRunLock(Store(url))
    again.acquire()  # free once the first run let go
    again.release()
    assert os.path.realpath(str(again.path)) == str(real) + ".run.lock"
