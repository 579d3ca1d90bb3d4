"""Faults on demand: seeded random profiles and targeted one-shot injections.

HTTP kinds: ``500``/``502``/``503`` (JSON error), ``429`` (``Retry-After``),
``html403``/``html1015`` (Cloudflare HTML pages), ``slow`` (answer after
``delay``), ``hang`` (never answer: the client's timeout must fire; the
connection is dropped once the client gives up or the server stops), ``reset``
(drop the TCP connection without an answer), ``malformed_json`` (a 200 whose
body is the first half of the real JSON), ``bad_fields`` (list endpoints only,
see ``corrupt.BAD_FIELDS_PATHS``: ``items`` items of a valid page get a field
removed or wrongly typed, ``corruption`` picks which, else random per item).
WS kinds: ``freeze`` (socket stays open, PONGs flow, no data), ``drop`` (close
without a close frame), ``malformed`` (a broken JSON frame), ``unknown_event``
(a JSON message of an unknown ``event_type``), ``v1_price_change`` (the legacy
``price_change`` shape instead of the current one), ``skip_delta`` (a
``price_change`` never sent to that connection; the world still changed),
``reorder`` (a data message sent after the next one), ``bad_hash`` (a ``book``
or ``price_change`` with wrong hashes, right levels). WS injections may target
one connection by its ``Connection.id`` (``connection=``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Any

from polytape.sim.corrupt import BAD_FIELDS_PATHS, CORRUPTION_NAMES

HTTP_KINDS = frozenset(
    {
        "500",
        "502",
        "503",
        "429",
        "html403",
        "html1015",
        "slow",
        "hang",
        "reset",
        "malformed_json",
        "bad_fields",
    }
)
WS_KINDS = frozenset(
    {"freeze", "drop", "malformed", "unknown_event", "v1_price_change", "skip_delta", "reorder", "bad_hash"}
)
HOSTS = frozenset({"gamma", "data", "clob", "ws"})


@dataclass
class FaultProfile:
    """Per-request (HTTP) and per-frame (WS) fault rates; all zero = no faults.

    ``error_rate`` starts a burst of ``burst_length`` 5xx answers on a host.
    ``hosts`` limits the profile to some of ``gamma``/``data``/``clob``/``ws``.
    """

    seed: int = 0
    error_rate: float = 0.0
    burst_length: int = 3
    rate_429: float = 0.0
    retry_after: float = 1.0
    slow_rate: float = 0.0
    slow_delay: float = 0.5
    html_rate: float = 0.0
    ws_freeze_rate: float = 0.0
    ws_drop_rate: float = 0.0
    ws_malformed_rate: float = 0.0
    ws_unknown_event_rate: float = 0.0
    ws_v1_price_change_rate: float = 0.0
    hosts: frozenset[str] | None = None
    hang_rate: float = 0.0
    malformed_json_rate: float = 0.0
    bad_fields_rate: float = 0.0
    bad_fields_items: int = 1
    ws_skip_delta_rate: float = 0.0
    ws_reorder_rate: float = 0.0
    ws_bad_hash_rate: float = 0.0

    @classmethod
    def named(cls, name: str, seed: int = 0) -> FaultProfile:
        """A preset: ``none``, ``flaky`` (5xx, slow), ``throttled`` (429, HTML) or ``hostile`` (all)."""
        presets: dict[str, dict[str, float]] = {
            "none": {},
            "flaky": {"error_rate": 0.05, "slow_rate": 0.05, "ws_drop_rate": 0.002},
            "throttled": {"rate_429": 0.1, "html_rate": 0.02, "slow_rate": 0.1},
            "hostile": {
                "error_rate": 0.05,
                "rate_429": 0.05,
                "html_rate": 0.02,
                "slow_rate": 0.05,
                "ws_drop_rate": 0.005,
                "ws_malformed_rate": 0.01,
                "ws_unknown_event_rate": 0.01,
                "ws_v1_price_change_rate": 0.01,
                "ws_freeze_rate": 0.05,
                "hang_rate": 0.002,
                "malformed_json_rate": 0.01,
                "bad_fields_rate": 0.02,
                "ws_skip_delta_rate": 0.005,
                "ws_reorder_rate": 0.005,
                "ws_bad_hash_rate": 0.005,
            },
        }
        if name not in presets:
            raise ValueError(f"unknown fault profile {name!r}; choose from {sorted(presets)}")
        return cls(seed=seed, **presets[name])  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultProfile:
        """Build from JSON (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault profile keys: {sorted(unknown)}")
        values = dict(data)
        if values.get("hosts") is not None:
            values["hosts"] = frozenset(values["hosts"])
        return cls(**values)


@dataclass
class Injection:
    """One targeted fault, served ``count`` times to matching requests/frames."""

    kind: str
    host: str | None = None
    path: str | None = None
    count: int = 1
    retry_after: float = 1.0
    delay: float | None = None
    items: int = 2  # bad_fields: items corrupted per page
    corruption: str | None = None  # bad_fields: a name from ``corrupt.CORRUPTIONS`` (else random)
    connection: int | None = None  # WS kinds: only this ``Connection.id``
    after: int = 0  # matching requests/frames let through before the first fault

    def matches(self, host: str, path: str) -> bool:
        """True when this injection applies to ``host`` and ``path``."""
        return (self.host is None or self.host == host) and (self.path is None or self.path == path)


@dataclass
class FaultInjector:
    """Decides, per request or frame, which fault (if any) to serve."""

    profile: FaultProfile | None = None
    injections: list[Injection] = field(default_factory=list)
    served: list[tuple[str, str, str]] = field(default_factory=list)  # (host, path, kind)
    _bursts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.set_profile(self.profile)

    def set_profile(self, profile: FaultProfile | None) -> None:
        """Switch the random profile (``None`` turns it off); reseeds its RNG."""
        self.profile = profile
        self._rng = random.Random(profile.seed if profile else 0)
        self._bursts.clear()

    def inject(
        self,
        kind: str,
        *,
        host: str | None = None,
        path: str | None = None,
        count: int = 1,
        retry_after: float = 1.0,
        delay: float | None = None,
        items: int = 2,
        corruption: str | None = None,
        connection: int | None = None,
        after: int = 0,
    ) -> Injection:
        """Queue a targeted fault; validated against the known kinds and hosts."""
        if kind not in HTTP_KINDS | WS_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if host is not None and host not in HOSTS:
            raise ValueError(f"unknown host {host!r}; choose from {sorted(HOSTS)}")
        if (kind in WS_KINDS) != (host == "ws") and host is not None:
            raise ValueError(f"fault {kind!r} does not apply to host {host!r}")
        if kind == "bad_fields" and path is not None and path not in BAD_FIELDS_PATHS:
            raise ValueError(f"bad_fields applies to list endpoints only: {sorted(BAD_FIELDS_PATHS)}")
        if corruption is not None and corruption not in CORRUPTION_NAMES:
            raise ValueError(f"unknown corruption {corruption!r}; choose from {sorted(CORRUPTION_NAMES)}")
        if connection is not None and kind not in WS_KINDS:
            raise ValueError("connection= applies to WebSocket faults only")
        if after < 0:
            raise ValueError("after= must not be negative")
        injection = Injection(
            kind, host, path, count, retry_after, delay, items, corruption, connection, after=after
        )
        self.injections.append(injection)
        return injection

    def clear(self) -> None:
        """Drop every injection and the random profile."""
        self.injections.clear()
        self.set_profile(None)

    def _take(
        self, host: str, path: str, kinds: frozenset[str], connection: int | None = None
    ) -> Injection | None:
        for injection in self.injections:
            if injection.connection not in (None, connection):
                continue
            if injection.kind in kinds and injection.matches(host, path):
                if injection.after > 0:  # let this one through, and no other injection either
                    injection.after -= 1
                    return None
                injection.count -= 1
                if injection.count <= 0:
                    self.injections.remove(injection)
                self.served.append((host, path, injection.kind))
                return injection
        return None

    def _profile_on(self, host: str) -> FaultProfile | None:
        p = self.profile
        if p is None or (p.hosts is not None and host not in p.hosts):
            return None
        return p

    def take_http(self, host: str, path: str) -> Injection | None:
        """The fault for this HTTP request: an injection first, else a profile roll."""
        listed = path in BAD_FIELDS_PATHS
        hit = self._take(host, path, HTTP_KINDS if listed else HTTP_KINDS - {"bad_fields"})
        if hit is not None:
            return hit
        p = self._profile_on(host)
        if p is None:
            return None
        kind: str | None = None
        if self._bursts.get(host, 0) > 0:
            self._bursts[host] -= 1
            kind = "503"
        elif self._rng.random() < p.error_rate:
            self._bursts[host] = max(0, p.burst_length - 1)
            kind = self._rng.choice(("500", "502", "503"))
        elif self._rng.random() < p.rate_429:
            kind = "429"
        elif self._rng.random() < p.html_rate:
            kind = self._rng.choice(("html403", "html1015"))
        elif self._rng.random() < p.slow_rate:
            kind = "slow"
        elif p.hang_rate and self._rng.random() < p.hang_rate:  # new rates roll only when set,
            kind = "hang"  # so older profiles keep their seeded sequences
        elif p.malformed_json_rate and self._rng.random() < p.malformed_json_rate:
            kind = "malformed_json"
        elif listed and p.bad_fields_rate and self._rng.random() < p.bad_fields_rate:
            kind = "bad_fields"
        if kind is None:
            return None
        self.served.append((host, path, kind))
        delay = p.slow_delay if kind == "slow" else None
        return Injection(kind, host, path, 1, p.retry_after, delay, items=p.bad_fields_items)

    def take_ws(self, kinds: frozenset[str], connection: int | None = None) -> str | None:
        """The WS fault (among ``kinds``) to apply to the next frame of ``connection``, if any."""
        hit = self._take("ws", "/ws/market", kinds, connection)
        if hit is not None:
            return hit.kind
        p = self._profile_on("ws")
        if p is None:
            return None
        rates = {
            "freeze": p.ws_freeze_rate,
            "drop": p.ws_drop_rate,
            "malformed": p.ws_malformed_rate,
            "unknown_event": p.ws_unknown_event_rate,
            "v1_price_change": p.ws_v1_price_change_rate,
            "skip_delta": p.ws_skip_delta_rate,
            "reorder": p.ws_reorder_rate,
            "bad_hash": p.ws_bad_hash_rate,
        }
        for kind in sorted(kinds):
            if rates[kind] and self._rng.random() < rates[kind]:
                self.served.append(("ws", "/ws/market", kind))
                return kind
        return None


_CF_403 = """<!DOCTYPE html>
<html lang="en-US"><head><title>Attention Required! | Cloudflare</title>
<meta charset="UTF-8" /></head>
<body><div id="cf-wrapper"><div id="cf-error-details">
<h1 data-translate="block_headline">Sorry, you have been blocked</h1>
<h2>You are unable to access {host}</h2>
<p>This website is using a security service to protect itself from online attacks.</p>
<span>Cloudflare Ray ID: <strong>{ray}</strong></span>
</div></div></body></html>
"""

_CF_1015 = """<!DOCTYPE html>
<html lang="en-US"><head><title>Access denied | {host} used Cloudflare to restrict access</title>
<meta charset="UTF-8" /></head>
<body><div id="cf-wrapper"><div id="cf-error-details">
<h1><span>Error</span> <span>1015</span></h1>
<h2>You are being rate limited</h2>
<p>The owner of this website ({host}) has banned you temporarily from accessing this website.</p>
<span>Cloudflare Ray ID: <strong>{ray}</strong></span>
</div></div></body></html>
"""


def cloudflare_page(kind: str, host: str, ray: str) -> tuple[int, str]:
    """Status and HTML body of a Cloudflare block (403) or rate-limit (1015 → 429) page."""
    if kind == "html403":
        return 403, _CF_403.format(host=host, ray=ray)
    return 429, _CF_1015.format(host=host, ray=ray)
