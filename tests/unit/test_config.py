"""Settings: defaults, environment, TOML, and one clear line for a bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polytape.config import load_settings
from polytape.errors import ConfigError
from tests.support.procs import polytape_env


def test_defaults_match_architecture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.database_url == "sqlite:///polytape.db"
    assert s.gamma_url == "https://gamma-api.polymarket.com"
    assert s.data_api_url == "https://data-api.polymarket.com"
    assert s.clob_url == "https://clob.polymarket.com"
    assert s.clob_ws_url == "wss://ws-subscriptions-clob.polymarket.com/ws/market"
    assert s.max_tracked_markets == 200
    assert s.trades_page_size == 500
    assert s.gamma_paging == "keyset" and s.trades_feed == "v1"
    assert s.ws_enabled is True and s.ws_assets_per_connection == 200
    assert s.book_resync_minutes == 5
    assert s.cadence("sync-gamma-events") == 600
    assert s.cadence("sync_open_interest") == 300
    assert 30 <= s.cadence("sync-large-trades") <= 60


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POLYTAPE_MAX_TRACKED_MARKETS", "50")
    monkeypatch.setenv("POLYTAPE_WS_ENABLED", "false")
    monkeypatch.setenv("POLYTAPE_GAMMA_URL", "http://127.0.0.1:9999/")
    s = load_settings()
    assert s.max_tracked_markets == 50 and s.ws_enabled is False
    assert s.gamma_url == "http://127.0.0.1:9999"


def test_toml_file_and_env_priority(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "polytape.toml").write_text(
        'trades_feed = "v2"\nmin_volume = 5.5\nmax_tracked_markets = 10\n'
    )
    monkeypatch.setenv("POLYTAPE_MAX_TRACKED_MARKETS", "20")
    s = load_settings()
    assert s.trades_feed == "v2" and s.min_volume == 5.5
    assert s.max_tracked_markets == 20  # the environment beats the file


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("POLYTAPE_MAX_TRACKED_MARKETS", "lots", "POLYTAPE_MAX_TRACKED_MARKETS"),
        ("POLYTAPE_GAMMA_PAGING", "pages", "POLYTAPE_GAMMA_PAGING"),
        ("POLYTAPE_DATABASE_URL", "mysql://x", "POLYTAPE_DATABASE_URL"),
        ("POLYTAPE_CLOB_WS_URL", "http://x", "POLYTAPE_CLOB_WS_URL"),
        ("POLYTAPE_TRADES_PAGE_SIZE", "0", "POLYTAPE_TRADES_PAGE_SIZE"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str, needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_key_in_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "polytape.toml").write_text("max_trackd_markets = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_trackd_markets'"):
        load_settings()


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_cli_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    env = polytape_env(minimal=True, POLYTAPE_MAX_TRACKED_MARKETS="-5")
    proc = subprocess.run(
        [sys.executable, "-m", "polytape", "db", "upgrade"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "POLYTAPE_MAX_TRACKED_MARKETS" in lines[0]
