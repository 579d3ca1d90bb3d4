"""The dashboard's HTML pages: small server-rendered shells that ``static/app.js`` fills
from the JSON API. Every value placed in HTML goes through :func:`esc`; the script
only ever sets ``textContent`` (market questions are user-written text)."""

from __future__ import annotations

from html import escape

from aiohttp import web

from polytape.signals.model import SIGNAL_TYPES

NAV = (("/", "Overview"), ("/markets", "Markets"), ("/signals", "Signals"), ("/coverage", "Coverage"))


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def page(
    title: str, active: str, body: str, page_name: str, data: dict[str, str] | None = None
) -> web.Response:
    attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in (data or {}).items())
    nav = "".join(
        f'<a href="{href}"{" class=active" if href == active else ""}>{esc(label)}</a>' for href, label in NAV
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · polytape</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head><body data-page="{esc(page_name)}"{attrs}>
<header><span class="brand">polytape</span><nav>{nav}</nav><span id="clock" class="muted"></span></header>
<main>{body}</main>
</body></html>"""
    return web.Response(text=html, content_type="text/html")


async def overview(request: web.Request) -> web.Response:
    body = """<h1>Overview</h1>
<div id="health" class="banner">loading…</div>
<section class="grid">
  <div><h2>Jobs</h2><table id="jobs"><thead><tr><th>job</th><th>last run</th><th>age</th>
  <th>cadence</th><th>rows</th><th>error</th></tr></thead><tbody></tbody></table></div>
  <div><h2>WebSocket feed</h2><table id="feed" class="kv"><tbody></tbody></table>
  <h2>Store</h2><table id="counts" class="kv"><tbody></tbody></table></div>
</section>
<section class="grid">
  <div><h2>Workers</h2><div id="workers" class="muted"></div>
  <h2>Archive</h2><div id="archive" class="muted"></div></div>
  <div><h2>Alerts (24 h)</h2><table id="alerts"><thead><tr><th>channel</th><th>sent</th><th>failed</th>
  <th>held</th><th>stale</th></tr></thead><tbody></tbody></table>
  <h2>Rejected payloads (1 h)</h2><table id="rejected" class="kv"><tbody></tbody></table></div>
</section>"""
    return page("Overview", "/", body, "overview")


async def markets(request: web.Request) -> web.Response:
    body = """<h1>Markets</h1>
<p><input id="search" type="search" placeholder="search question, event, tag…" autocomplete="off">
<span id="count" class="muted"></span></p>
<table id="markets" class="sortable"><thead><tr>
<th data-key="question">question</th><th data-key="event_title">event</th><th data-key="tags">tags</th>
<th data-key="best_bid" class="num">bid</th><th data-key="best_ask" class="num">ask</th>
<th data-key="spread" class="num">spread</th><th data-key="open_interest" class="num">open interest</th>
<th data-key="volume_24h" class="num">24 h volume</th><th data-key="last_trade_price" class="num">last</th>
<th data-key="last_trade_ts">last trade</th></tr></thead><tbody></tbody></table>"""
    return page("Markets", "/markets", body, "markets")


async def market(request: web.Request) -> web.Response:
    cid = request.match_info["condition_id"]
    body = f"""<h1 id="question">market <code>{esc(cid)}</code></h1>
<p id="meta" class="muted"></p>
<div id="tokens" class="tokens"></div>
<section><h2>Price <select id="window">
<option value="1">1 h</option><option value="6">6 h</option><option value="24" selected>24 h</option>
<option value="168">7 d</option></select></h2>
<p id="price-source" class="muted"></p><div id="price-chart" class="chart"></div></section>
<section class="grid">
<div><h2>Recent trades</h2><p class="muted" id="large-note"></p><table id="trades"><thead><tr><th>time</th>
<th>side</th><th>outcome</th><th class="num">size</th><th class="num">price</th><th class="num">USD</th>
<th>wallet</th></tr></thead><tbody></tbody></table></div>
<div><h2>Open interest</h2><div id="oi-chart" class="chart"></div>
<h2>Signals</h2><ul id="signals" class="signals"></ul></div>
</section>"""
    return page("Market", "/markets", body, "market", {"condition-id": cid})


async def signals(request: web.Request) -> web.Response:
    options = "".join(f'<option value="{esc(t)}">{esc(t)}</option>' for t in SIGNAL_TYPES)
    body = f"""<h1>Signals</h1>
<form id="filters" class="filters">
<label>type <select id="type" name="type"><option value="">all</option>{options}</select></label>
<label>market <input id="market" name="market" placeholder="condition id (0x…)" autocomplete="off"></label>
<span id="stream-state" class="muted">connecting…</span></form>
<ul id="signals" class="signals"></ul>"""
    return page("Signals", "/signals", body, "signals")


async def coverage(request: web.Request) -> web.Response:
    body = """<h1>Coverage</h1>
<div id="archive" class="banner"></div>
<table id="coverage"><thead><tr><th>market</th><th>outcome</th><th>token</th><th>recorded</th><th>since</th>
<th>last update</th><th>age</th><th>hash</th><th>gaps (reason)</th></tr></thead><tbody></tbody></table>"""
    return page("Coverage", "/coverage", body, "coverage")
