"""Issue 12 item 15: typos in the environment, inf/nan and absurd numbers are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polytape.config import Settings, check_environment, load_settings
from polytape.errors import ConfigError
from tests.support.procs import polytape_env


def test_misspelt_variable_is_refused_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POLYTAPE_DATABSE_URL", "sqlite:///x.db")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "POLYTAPE_DATABSE_URL" in message and "did you mean POLYTAPE_DATABASE_URL?" in message


def test_test_suite_variables_and_other_prefixes_are_left_alone() -> None:
    check_environment({"POLYTAPE_TEST_PG_URL": "x", "POLYTAPEX": "1", "PATH": "/bin"})
    with pytest.raises(ConfigError, match=r"unknown setting POLYTAPE_NOTHING_LIKE_IT$"):
        check_environment({"POLYTAPE_NOTHING_LIKE_IT": "1"})


def _numeric_fields() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        text = str(field.annotation)
        if "float" in text or "int" in text:
            names.append(name)
    return names


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e400"])
@pytest.mark.parametrize("name", _numeric_fields())
def test_no_numeric_setting_takes_inf_or_nan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(f"POLYTAPE_{name.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"POLYTAPE_{name.upper()}" in str(info.value) and "\n" not in str(info.value)


def test_unknown_toml_key_suggests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "polytape.toml").write_text("max_trackd_markets = 3\n")
    with pytest.raises(ConfigError, match="did you mean max_tracked_markets"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"POLYTAPE_DATABSE_URL": "sqlite:///x.db"}, "did you mean POLYTAPE_DATABASE_URL"),
        ({"POLYTAPE_HTTP_MAX_RESPONSE_MB": "1e400"}, "POLYTAPE_HTTP_MAX_RESPONSE_MB"),
    ],
)
def test_cli_exits_2_with_one_line(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "polytape", "job", "sync-large-trades"],
        cwd=tmp_path, env=polytape_env(minimal=True, **env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "polytape.db").exists()
