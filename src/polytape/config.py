"""Settings: one typed object, built once at start and passed down.

Sources, highest priority first: explicit overrides (CLI flags), ``POLYTAPE_*``
environment variables, a TOML file (``--config FILE`` or ``./polytape.toml``),
then the defaults below. Names are the seed's, upper-cased for the environment.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from polytape.errors import ConfigError

DEFAULT_TOML = Path("polytape.toml")


class Settings(BaseSettings):
    """Every knob polytape has. See README.md for what each one does."""

    model_config = SettingsConfigDict(
        env_prefix="POLYTAPE_",
        extra="forbid",
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
    )

    # --- where things are -------------------------------------------------
    database_url: str = "sqlite:///polytape.db"
    gamma_url: str = "https://gamma-api.polymarket.com"
    data_api_url: str = "https://data-api.polymarket.com"
    clob_url: str = "https://clob.polymarket.com"
    clob_ws_url: str = "wss://ws-subscriptions-clob.polymarket.com/ws/market"

    # --- universe ------------------------------------------------------------
    max_tracked_markets: int = Field(200, ge=1, le=10_000)
    min_liquidity: float = Field(10_000.0, ge=0)
    min_volume: float = Field(100_000.0, ge=0)
    min_oi: float = Field(25_000.0, ge=0)
    # ``ranked``: the seed's capped, scored universe; ``all``: every live market with a book.
    universe_mode: Literal["ranked", "all"] = "ranked"

    # --- Gamma -----------------------------------------------------------------
    gamma_paging: Literal["keyset", "offset"] = "keyset"
    gamma_page_size: int = Field(100, ge=1, le=500)
    gamma_max_pages: int = Field(500, ge=1)

    # --- trades ------------------------------------------------------------
    trades_feed: Literal["v1", "v2"] = "v1"
    large_trade_usd_threshold: float = Field(10_000.0, gt=0)
    trades_page_size: int = Field(500, ge=1, le=500)
    trades_safety_window_seconds: int = Field(300, ge=0)
    trades_initial_lookback_hours: float = Field(24.0, gt=0)
    trades_max_pages: int = Field(20, ge=1)
    trades_offset_cap: int = Field(3000, ge=1)
    trade_max_size: float = Field(1e9, gt=0)
    """A trade of more shares than this is rejected as implausible."""
    trade_max_usd: float = Field(1e8, gt=0)
    """A trade worth more USD than this is rejected as implausible."""
    backfill_requests_per_second: float = Field(5.0, gt=0)

    # --- open interest -----------------------------------------------------
    oi_batch_size: int = Field(20, ge=1, le=100)

    # --- books -------------------------------------------------------------
    ws_enabled: bool = True
    ws_assets_per_connection: int = Field(200, ge=1, le=500)
    ws_subscribe_chunk: int = Field(100, ge=1, le=100)
    ws_ping_interval_seconds: float = Field(10.0, gt=0)
    ws_silence_timeout_seconds: float = Field(60.0, gt=0)
    ws_reconnect_max_seconds: float = Field(60.0, gt=0)
    ws_connects_per_second: float = Field(5.0, gt=0, le=1000)
    ws_split_after_failures: int = Field(3, ge=1, le=100)
    ws_verify_hashes: bool = True
    book_resync_minutes: float = Field(5.0, gt=0)
    book_write_seconds: float = Field(1.0, gt=0)  # at most one write per book per this
    book_verify_seconds: float = Field(0.5, ge=0)  # hash check of a changed book within; 0: each message
    books_batch_size: int = Field(500, ge=1, le=500)
    book_stale_seconds: float = Field(600.0, gt=0)

    # --- archive (Parquet history of every book event, trade and gap) ---------
    archive_enabled: bool = True
    archive_dir: Path = Path("polytape-archive")
    archive_flush_seconds: float = Field(10.0, gt=0, le=3600)
    archive_retention_days: float | None = Field(None, gt=0)
    archive_checkpoint_seconds: float = Field(300.0, gt=0)

    # --- cadences (seconds), the seed's defaults ------------------------------
    sync_gamma_events_interval: float = Field(600.0, gt=0)
    sync_tag_metadata_interval: float = Field(6 * 3600.0, gt=0)
    refresh_universe_interval: float = Field(720.0, gt=0)
    sync_open_interest_interval: float = Field(300.0, gt=0)
    sync_large_trades_interval: float = Field(45.0, gt=0)
    sync_orderbooks_interval: float = Field(20.0, gt=0)
    run_signal_engine_interval: float = Field(45.0, gt=0)
    schedule_jitter_fraction: float = Field(0.1, ge=0, le=0.5)

    # --- signals -------------------------------------------------------------
    signal_large_trade_usd: float = Field(10_000.0, gt=0)
    signal_accumulation_usd: float = Field(50_000.0, gt=0)
    signal_accumulation_window_minutes: float = Field(60.0, gt=0)
    signal_arb_min_edge: float = Field(0.01, ge=0)
    signal_book_max_age_seconds: float = Field(30.0, gt=0)
    signal_move_points: float = Field(0.10, gt=0)
    signal_move_window_minutes: float = Field(30.0, gt=0)
    signal_oi_change_pct: float = Field(10.0, gt=0)
    signal_oi_change_usd: float = Field(50_000.0, ge=0)
    signal_cooldown_minutes: float = Field(30.0, ge=0)
    signal_trade_horizon_minutes: float = Field(60.0, gt=0)
    """Trades first seen more than max(this, the accumulation and move windows) after they
    happened (a backfill, a long outage) are history: stored, never signalled."""
    signal_webhook_url: str | None = None
    alert_horizon_minutes: float = Field(15.0, gt=0, le=7 * 24 * 60)
    """Signals about something older than this are stored but not delivered as alerts."""

    # --- alerts and the web dashboard ---------------------------------------------
    alert_urls: str | list[str] | None = None
    alert_max_per_hour: int = Field(10, ge=1, le=10_000)
    alert_max_attempts: int = Field(5, ge=1, le=20)
    alert_retry_base_seconds: float = Field(2.0, ge=0, le=600)
    web_host: str = "127.0.0.1"
    web_port: int = Field(8765, ge=0, le=65535)

    # --- HTTP ----------------------------------------------------------------
    http_timeout_seconds: float = Field(15.0, gt=0)
    http_max_retries: int = Field(4, ge=0, le=20)
    http_backoff_base_seconds: float = Field(0.5, ge=0)
    http_backoff_max_seconds: float = Field(30.0, gt=0)
    http_max_concurrency: int = Field(8, ge=1, le=256)
    http_max_response_mb: float = Field(50.0, gt=0, le=1024)
    http_deadline_seconds: float = Field(60.0, gt=0, le=3600)
    job_deadline_seconds: float = Field(1800.0, gt=0)

    # --- operations ------------------------------------------------------------
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int | None = Field(None, ge=1, le=65535)
    db_batch_size: int = Field(1000, ge=1, le=50_000)
    db_retry_seconds: float = Field(120.0, ge=0, le=86_400)
    """How long one write keeps retrying while the database is away before its job gives up."""
    shutdown_grace_seconds: float = Field(8.0, ge=0, le=300)

    # --- several workers on one PostgreSQL ------------------------------------------
    worker_heartbeat_seconds: float = Field(2.0, gt=0, le=60)
    worker_lease_seconds: float = Field(10.0, gt=0, le=600)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str) -> str:
        if not v.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        parts = urlsplit(v)
        if v.startswith("sqlite"):
            if parts.path in ("", "/") or parts.path.startswith("/:memory:"):
                raise ValueError("names no file (write the path after sqlite:/// )")
            return v
        try:
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError("the port is not a number") from None
        if not parts.path.strip("/"):
            raise ValueError("names no database (add /DBNAME after the host and port)")
        return v

    @field_validator("gamma_url", "data_api_url", "clob_url")
    @classmethod
    def _check_http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("clob_ws_url")
    @classmethod
    def _check_ws_url(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return v

    @field_validator("alert_urls")
    @classmethod
    def _check_alert_urls(cls, v: str | list[str] | None) -> str | list[str] | None:
        parse_alert_urls(v)  # raises ValueError naming the bad entry
        return v

    def alert_specs(self) -> list[AlertSpec]:
        """Every alert channel: ``alert_urls``, plus the old webhook as a JSON URL."""
        specs = parse_alert_urls(self.alert_urls)
        if self.signal_webhook_url:
            specs.append(AlertSpec(webhook_as_json_url(self.signal_webhook_url)))
        return specs

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _TOML_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def cadence(self, job_name: str) -> float:
        """Seconds between runs of the job named ``job_name`` (dashes or underscores)."""
        return float(getattr(self, job_name.replace("-", "_") + "_interval"))


@dataclass(frozen=True)
class AlertSpec:
    """One alert channel: an Apprise URL and which signals it wants."""

    url: str
    types: frozenset[str] = frozenset()  # empty: every type
    min_score: float | None = None


_ALERT_FILTERS = ("types=", "min_score=")


def parse_alert_urls(value: str | list[str] | None) -> list[AlertSpec]:
    """``POLYTAPE_ALERT_URLS``: Apprise URLs separated by whitespace (or a JSON/TOML list),
    each optionally prefixed by filters, e.g. ``types=large_trade,complement_arb;min_score=20000;tgram://…``.
    """
    if not value:
        return []
    entries = value.split() if isinstance(value, str) else [e.strip() for e in value]
    specs = []
    for entry in entries:
        if not entry:
            continue
        types: frozenset[str] = frozenset()
        min_score = None
        rest = entry
        while rest.startswith(_ALERT_FILTERS):
            item, sep, rest = rest.partition(";")
            if not sep:
                raise ValueError(f"alert entry has filters but no URL after ';': {item!r}")
            key, _, val = item.partition("=")
            if key == "types":
                types = frozenset(t.strip() for t in val.split(",") if t.strip())
            else:
                try:
                    min_score = float(val)
                except ValueError:
                    raise ValueError(f"min_score must be a number, not {val!r}") from None
        if "://" not in rest:
            raise ValueError(f"not an Apprise URL (scheme://...): {rest[:12]!r}...")
        specs.append(AlertSpec(rest, types, min_score))
    return specs


def webhook_as_json_url(url: str) -> str:
    """The old ``POLYTAPE_SIGNAL_WEBHOOK_URL`` (http/https) as Apprise's ``json://``/``jsons://``."""
    if url.startswith("https://"):
        return "jsons://" + url.removeprefix("https://")
    if url.startswith("http://"):
        return "json://" + url.removeprefix("http://")
    return url


# The TOML path is chosen per load; pydantic-settings builds sources from the class.
_TOML_FILE: dict[str, Path | None] = {"path": None}


# Environment variables with the prefix that are not settings (the test suite's own).
_ENV_NOT_SETTINGS = ("POLYTAPE_TEST_",)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a ``POLYTAPE_*`` variable that names no setting (a typo would be ignored)."""
    environ = os.environ if environ is None else environ
    known = {name.upper() for name in Settings.model_fields}
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith("POLYTAPE_") or upper.startswith(_ENV_NOT_SETTINGS):
            continue
        name = upper.removeprefix("POLYTAPE_")
        if name not in known:
            raise ConfigError(f"unknown setting {var}{_did_you_mean(name, known, 'POLYTAPE_')}")


def _did_you_mean(name: str, known: set[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, or raise ConfigError naming the first bad setting."""
    check_environment()
    path = config_file
    if path is None and DEFAULT_TOML.is_file():
        path = DEFAULT_TOML
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    _TOML_FILE["path"] = path
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"config file {path}: {exc}") from None
    finally:
        _TOML_FILE["path"] = None


_SECRET_SETTINGS = ("alert_urls", "signal_webhook_url")


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = err.get("loc") or ("?",)
    name = str(loc[0])
    if err.get("type") == "extra_forbidden":
        return f"unknown setting {name!r}{_did_you_mean(name, set(Settings.model_fields))}"
    value = err.get("input")
    if name in _SECRET_SETTINGS:
        value = "…"  # URLs with tokens never reach the terminal or logs
    return f"bad setting POLYTAPE_{name.upper()}={value!r}: {err.get('msg', 'invalid')}"
