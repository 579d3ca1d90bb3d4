// polytape dashboard: fills the server's page shells from the JSON API.
// Written for this project; no external libraries. Text is only ever set through
// textContent (never innerHTML): market questions are user-written text.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "cls") node.className = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = String(v);
    else node.setAttribute(k, String(v));
  }
  return node;
}

async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(url + ": HTTP " + resp.status);
  return resp.json();
}

const fmt = {
  price(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(3); },
  num(v, d = 0) {
    return v === null || v === undefined ? "–"
      : Number(v).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
  },
  usd(v) { return v === null || v === undefined ? "–" : "$" + fmt.num(v); },
  time(v) { return v ? new Date(v).toISOString().replace("T", " ").slice(0, 19) : "–"; },
  age(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    if (s < 120) return s + "s";
    if (s < 7200) return Math.floor(s / 60) + "m";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  },
};

function setRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function kvRows(tbody, obj) {
  setRows(tbody, Object.entries(obj || {}).map(([k, v]) =>
    el("tr", {}, el("td", { text: k }), el("td", { text: v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : v }))));
}

function every(seconds, fn) {
  let busy = false;
  const run = async () => {
    if (busy) return;
    busy = true;
    try { await fn(); } catch (err) { showError(err); } finally { busy = false; }
  };
  run();
  return setInterval(run, seconds * 1000);
}

function showError(err) {
  const clock = document.getElementById("clock");
  if (clock) { clock.textContent = "⚠ " + err.message; clock.className = "bad"; }
}

function tick() {
  const clock = document.getElementById("clock");
  if (clock) { clock.textContent = fmt.time(new Date().toISOString()) + " UTC"; clock.className = "muted"; }
}

// --- charts (SVG, hand-written) ------------------------------------------------------------

function lineChart(container, series, opts = {}) {
  const W = 900, H = opts.height || 240, L = 56, R = 12, T = 12, B = 26;
  const pts = series.flatMap(s => s.points);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  if (!pts.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: opts.empty || "no data in this window" }));
    container.replaceChildren(root);
    return;
  }
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (opts.x0 !== undefined) x0 = Math.min(x0, opts.x0);
  if (opts.x1 !== undefined) x1 = Math.max(x1, opts.x1);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.01 * (Math.abs(y0) || 1); y1 += 0.01 * (Math.abs(y1) || 1); }
  const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    root.append(svg("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), stroke: "#30363d" }));
    root.append(svg("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", text: opts.yfmt ? opts.yfmt(y) : y.toFixed(3) }));
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + (x1 - x0) * i / 4;
    const label = new Date(x).toISOString().slice(opts.days ? 5 : 11, 16).replace("T", " ");
    root.append(svg("text", { x: sx(x), y: H - 8, "text-anchor": "middle", text: label }));
  }
  series.forEach((s, k) => {
    if (!s.points.length) return;
    const d = s.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    const attrs = { d, fill: "none", stroke: s.color, "stroke-width": 1.6 };
    if (s.step) attrs["stroke-linejoin"] = "miter";
    root.append(svg("path", attrs));
    if (s.dots) for (const p of s.points) root.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.2, fill: s.color }));
    root.append(svg("text", { x: L + 8 + k * 110, y: T + 12, fill: s.color, text: s.name }));
  });
  container.replaceChildren(root);
}

function depthChart(container, bids, asks) {
  const W = 440, H = 150, L = 8, R = 8, T = 8, B = 20;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const cum = levels => { let t = 0; return levels.map(([p, s]) => [p, (t += s)]); };
  const cb = cum(bids), ca = cum(asks);
  const all = cb.concat(ca);
  if (!all.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "empty book" }));
    container.replaceChildren(root);
    return;
  }
  const p0 = Math.min(...all.map(l => l[0])), p1 = Math.max(...all.map(l => l[0]));
  const q1 = Math.max(...all.map(l => l[1]));
  const span = p1 - p0 || 0.01;
  const sx = p => L + (p - (p0 - span * 0.05)) / (span * 1.1) * (W - L - R);
  const sy = q => H - B - q / q1 * (H - T - B);
  // A step per level, from the best price outwards, carried on to the chart's edge.
  const area = (levels, color, edge) => {
    if (!levels.length) return;
    let d = `M${sx(levels[0][0]).toFixed(1)} ${sy(0)}`;
    let prev = 0;
    for (const [p, q] of levels) { d += ` L${sx(p).toFixed(1)} ${sy(prev).toFixed(1)} L${sx(p).toFixed(1)} ${sy(q).toFixed(1)}`; prev = q; }
    d += ` L${edge} ${sy(prev).toFixed(1)} L${edge} ${sy(0)} Z`;
    root.append(svg("path", { d, fill: color + "55", stroke: color, "stroke-width": 1.2 }));
  };
  area(cb, "#3fb950", L);
  area(ca, "#f85149", W - R);
  root.append(svg("text", { x: L, y: H - 5, text: p0.toFixed(3) }));
  root.append(svg("text", { x: W - R, y: H - 5, "text-anchor": "end", text: p1.toFixed(3) }));
  root.append(svg("text", { x: W - R, y: T + 10, "text-anchor": "end", text: "depth " + fmt.num(q1) }));
  container.replaceChildren(root);
}

// --- pages ------------------------------------------------------------------------------

const pages = {};

pages.overview = () => every(5, async () => {
  const s = await getJSON("/api/status");
  const health = document.getElementById("health");
  health.className = "banner " + (s.healthy ? "ok" : "bad");
  health.replaceChildren(el("strong", { text: s.healthy ? "healthy" : "unhealthy" }),
    ...s.problems.map(p => el("div", { text: "– " + p })));
  setRows(document.querySelector("#jobs tbody"), s.jobs.map(j => el("tr", {},
    el("td", { text: j.name }),
    el("td", { text: j.status, cls: j.status === "ok" ? "good" : j.status === "partial" ? "warn" : "bad" }),
    el("td", { text: fmt.age(j.age_seconds) + (j.late ? " LATE" : ""), cls: j.late ? "late" : "" }),
    el("td", { text: fmt.age(j.cadence_seconds) }),
    el("td", { text: j.rows === null ? "–" : j.rows }),
    el("td", { text: (j.error || "").slice(0, 80) }))));
  kvRows(document.querySelector("#feed tbody"), s.feed || { feed: "not reporting" });
  const counts = Object.assign({}, s.store);
  delete counts.rejected_recent;
  kvRows(document.querySelector("#counts tbody"), counts);
  const rejected = s.store.rejected_recent || {};
  kvRows(document.querySelector("#rejected tbody"), Object.keys(rejected).length ? rejected : { none: 0 });
  const workers = document.getElementById("workers");
  if (Array.isArray(s.workers) && s.workers.length && typeof s.workers[0] === "object") {
    const keys = Object.keys(s.workers[0]);
    const cell = v => el("td", { text: v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : v });
    workers.replaceChildren(el("table", {}, el("thead", {}, el("tr", {}, ...keys.map(k => el("th", { text: k })))),
      el("tbody", {}, ...s.workers.map(w => el("tr", {}, ...keys.map(k => cell(w[k])))))));
  } else {
    workers.textContent = s.workers === null || s.workers === undefined
      ? "no worker leases in this build" : "no worker holds a lease (single process or none running)";
  }
  const archive = document.getElementById("archive");
  archive.textContent = s.archive.enabled
    ? s.archive.dir + ": " + fmt.num(s.archive.bytes / 1e6, 1) + " MB in " + s.archive.files + " files, "
      + fmt.num(s.archive.l2_rows_last_hour) + " book rows in the last hour, newest flush "
      + fmt.time(s.archive.newest_flush_us ? new Date(s.archive.newest_flush_us / 1000).toISOString() : null)
      + ", " + s.archive.open_gaps + " open gap(s)"
    : "archive not enabled: " + s.archive.reason;
  setRows(document.querySelector("#alerts tbody"), s.alerts.length ? s.alerts.map(a => el("tr", {},
    el("td", { text: a.channel }), el("td", { text: a.sent || 0 }),
    el("td", { text: a.failed || 0, cls: a.failed ? "bad" : "" }), el("td", { text: a.held || 0 }),
    el("td", { text: a.stale || 0 }))) : [el("tr", {}, el("td", { text: "no alerts in the last 24 h", colspan: 5, cls: "muted" }))]);
});

pages.markets = () => {
  let rows = [], key = null, dir = 1;
  const tbody = document.querySelector("#markets tbody");
  const search = document.getElementById("search");
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    let shown = rows.filter(r => !q || [r.question, r.event_title, r.condition_id, ...(r.tags || [])]
      .some(v => v && String(v).toLowerCase().includes(q)));
    if (key) {
      shown = shown.slice().sort((a, b) => {
        const va = Array.isArray(a[key]) ? a[key].join(",") : a[key], vb = Array.isArray(b[key]) ? b[key].join(",") : b[key];
        if (va === vb) return 0;
        if (va === null || va === undefined) return 1;
        if (vb === null || vb === undefined) return -1;
        return (va < vb ? -1 : 1) * dir;
      });
    }
    document.getElementById("count").textContent = shown.length + " of " + rows.length + " tracked markets";
    setRows(tbody, shown.map(r => el("tr", { "data-condition-id": r.condition_id },
      el("td", {}, el("a", { href: "/markets/" + encodeURIComponent(r.condition_id), text: r.question || r.condition_id })),
      el("td", { text: r.event_title || "" }),
      el("td", { text: (r.tags || []).join(", ") }),
      el("td", { cls: "num bid", text: fmt.price(r.best_bid) }),
      el("td", { cls: "num ask", text: fmt.price(r.best_ask) }),
      el("td", { cls: "num", text: fmt.price(r.spread) }),
      el("td", { cls: "num", text: fmt.usd(r.open_interest) }),
      el("td", { cls: "num", text: fmt.usd(r.volume_24h) }),
      el("td", { cls: "num", text: fmt.price(r.last_trade_price) }),
      el("td", { text: fmt.time(r.last_trade_ts) }))));
  };
  for (const th of document.querySelectorAll("#markets th[data-key]")) {
    th.addEventListener("click", () => {
      dir = key === th.dataset.key ? -dir : 1;
      key = th.dataset.key;
      document.querySelectorAll("#markets th").forEach(h => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(dir > 0 ? "sorted-asc" : "sorted-desc");
      draw();
    });
  }
  search.addEventListener("input", draw);
  every(5, async () => { rows = (await getJSON("/api/markets")).markets; draw(); });
};

function signalItem(s, fresh) {
  const li = el("li", { "data-id": s.id, "data-type": s.signal_type, cls: fresh ? "fresh" : "" },
    el("span", { cls: "when", text: fmt.time(s.detected_at) }),
    el("span", { cls: "kind", text: s.signal_type }),
    el("span", { text: s.text.replace(/^[a-z_]+: /, "") }));
  if (s.condition_id) {
    li.append(" ", el("a", { href: "/markets/" + encodeURIComponent(s.condition_id), text: "market" }));
  }
  return li;
}

pages.market = () => {
  const cid = document.body.dataset.conditionId;
  const base = "/api/markets/" + encodeURIComponent(cid);
  const tokensBox = document.getElementById("tokens");
  const cards = {};
  const card = t => {
    if (cards[t.token_id]) return cards[t.token_id];
    const c = {
      root: el("div", { cls: "token", "data-token-id": t.token_id }),
      bid: el("span", { cls: "best-bid bid" }), ask: el("span", { cls: "best-ask ask" }),
      info: el("div", { cls: "muted" }), depth: el("div", { cls: "chart depth" }),
      bids: el("tbody"), asks: el("tbody"),
    };
    c.root.append(el("h2", { text: t.outcome || "outcome " + t.outcome_index }),
      el("div", { cls: "top" }, el("span", {}, "bid ", c.bid), el("span", {}, "ask ", c.ask)),
      c.info, c.depth,
      el("div", { cls: "book" },
        el("table", {}, el("thead", {}, el("tr", {}, el("th", { cls: "num", text: "bid" }), el("th", { cls: "num", text: "size" }))), c.bids),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", { cls: "num", text: "ask" }), el("th", { cls: "num", text: "size" }))), c.asks)));
    tokensBox.append(c.root);
    cards[t.token_id] = c;
    return c;
  };
  const levelRows = (levels, cls) => levels.slice(0, 10).map(([p, s]) =>
    el("tr", {}, el("td", { cls: "num " + cls, text: fmt.price(p) }), el("td", { cls: "num", text: fmt.num(s, 2) })));
  every(1, async () => {
    const m = await getJSON(base);
    document.getElementById("question").textContent = m.question || cid;
    document.title = (m.question || cid) + " · polytape";
    document.getElementById("meta").textContent = [m.event_title, (m.tags || []).join(", "),
      "open interest " + fmt.usd(m.open_interest), m.tracked ? "tracked (" + m.tracked + ")" : "not tracked",
      m.closed ? "closed" : ""].filter(Boolean).join(" · ");
    for (const t of m.tokens) {
      const c = card(t);
      c.bid.textContent = fmt.price(t.best_bid);
      c.ask.textContent = fmt.price(t.best_ask);
      c.info.textContent = "book " + (t.source || "none") + ", updated " + fmt.time(t.updated_at) + (t.hash_status ? ", hash " + t.hash_status : "");
      depthChart(c.depth, t.bids, t.asks);
      setRows(c.bids, levelRows(t.bids, "bid"));
      setRows(c.asks, levelRows(t.asks, "ask"));
    }
  });
  const windowSel = document.getElementById("window");
  const history = async () => {
    const hours = Number(windowSel.value);
    const h = await getJSON(base + "/history?hours=" + hours);
    const ts = p => [Date.parse(p[0]), p[1]];
    const now = Date.now();
    document.getElementById("price-source").textContent = h.source === "archive"
      ? "mid from the archive's quotes; last trades from the archive (or the database where it has none)"
      : "archive not enabled (" + h.archive.reason + "): prices from stored snapshots and recorded trades";
    lineChart(document.getElementById("price-chart"), [
      { name: "mid", points: h.mid.map(ts), color: "#58a6ff" },
      { name: "last trade", points: h.last_trade.map(ts), color: "#d29922", dots: true },
    ], { x0: now - hours * 3600e3, x1: now, days: hours > 24 });
    lineChart(document.getElementById("oi-chart"), [{ name: "open interest", points: h.open_interest.map(ts), color: "#a371f7", dots: true }],
      { height: 180, yfmt: v => "$" + fmt.num(v), x0: now - hours * 3600e3, x1: now, days: hours > 24, empty: "no open-interest snapshots in this window" });
  };
  windowSel.addEventListener("change", () => history().catch(showError));
  every(30, history);
  every(5, async () => {
    const t = await getJSON(base + "/trades?limit=50");
    document.getElementById("large-note").textContent = "large: at least " + fmt.usd(t.large_usd);
    setRows(document.querySelector("#trades tbody"), t.trades.map(r => el("tr", { cls: r.large ? "large" : "" },
      el("td", { text: fmt.time(r.trade_ts) }), el("td", { text: r.side || "" }), el("td", { text: r.outcome || "" }),
      el("td", { cls: "num", text: fmt.num(r.size, 2) }), el("td", { cls: "num", text: fmt.price(r.price) }),
      el("td", { cls: "num", text: fmt.usd(r.usd_value) }), el("td", { text: (r.wallet || "").slice(0, 12) }))));
    const s = await getJSON("/api/signals?since=7d&limit=50&market=" + encodeURIComponent(cid));
    const list = document.getElementById("signals");
    setRows(list, s.signals.length ? s.signals.slice().reverse().map(x => signalItem(x, false))
      : [el("li", { cls: "muted", text: "no signals in the last 7 days" })]);
  });
};

pages.signals = () => {
  const list = document.getElementById("signals");
  const state = document.getElementById("stream-state");
  const typeSel = document.getElementById("type"), marketIn = document.getElementById("market");
  let source = null;
  const query = () => {
    const q = new URLSearchParams();
    if (typeSel.value) q.set("type", typeSel.value);
    if (marketIn.value.trim()) q.set("market", marketIn.value.trim());
    return q;
  };
  const connect = async () => {
    if (source) source.close();
    const q = query();
    q.set("limit", "100");
    const recent = await getJSON("/api/signals?" + q.toString());
    list.replaceChildren(...recent.signals.slice().reverse().map(s => signalItem(s, false)));
    const last = recent.signals.length ? recent.signals[recent.signals.length - 1].id : null;
    const sq = query();
    if (last !== null) sq.set("after_id", last);
    source = new EventSource("/api/signals/stream?" + sq.toString());
    source.addEventListener("hello", () => { state.textContent = "live"; state.className = "good"; });
    source.addEventListener("signal", ev => {
      const s = JSON.parse(ev.data);
      if (list.querySelector(`li[data-id="${Number(s.id)}"]`)) return;
      list.prepend(signalItem(s, true));
      while (list.children.length > 500) list.lastChild.remove();
    });
    source.onerror = () => { state.textContent = "reconnecting…"; state.className = "warn"; };
  };
  document.getElementById("filters").addEventListener("submit", ev => { ev.preventDefault(); connect().catch(showError); });
  typeSel.addEventListener("change", () => connect().catch(showError));
  marketIn.addEventListener("change", () => connect().catch(showError));
  connect().catch(showError);
};

function gapText(g) {
  const end = g.end ? fmt.time(g.end).slice(11) : "open";
  return (g.reason || "?") + " " + fmt.time(g.start).slice(11) + "–" + end;
}

pages.coverage = () => every(30, async () => {
  const c = await getJSON("/api/coverage");
  const banner = document.getElementById("archive");
  banner.className = "banner " + (c.archive.enabled ? "ok" : "");
  banner.textContent = c.archive.enabled
    ? "archive " + c.archive.dir + ": " + fmt.num(c.archive.files) + " files, " + fmt.num(c.archive.bytes / 1e6, 1)
      + " MB, " + c.archive.open_gaps + " open gap(s); recorded share and gaps over the last " + c.hours + " h"
    : "archive not enabled (" + c.archive.reason + "): recorded time and gaps come from the archive's gap ledger; "
      + "below is what the database knows of each tracked token's book.";
  setRows(document.querySelector("#coverage tbody"), c.tokens.map(t => el("tr", { "data-token-id": t.token_id },
    el("td", {}, el("a", { href: "/markets/" + encodeURIComponent(t.condition_id), text: t.question || t.condition_id })),
    el("td", { text: t.outcome || "" }), el("td", {}, el("code", { text: String(t.token_id).slice(0, 14) + "…" })),
    el("td", { text: t.recorded_share === null || t.recorded_share === undefined ? "–" : (100 * t.recorded_share).toFixed(1) + " %",
               cls: t.recorded_share !== null && t.recorded_share < 0.99 ? "warn" : "" }),
    el("td", { text: fmt.time(t.recorded_from || t.snapshot_at) }), el("td", { text: fmt.time(t.updated_at) }),
    el("td", { text: fmt.age(t.age_seconds), cls: t.stale ? "bad" : "" }),
    el("td", { text: t.hash_status || "–" }),
    el("td", { text: t.gaps === null || t.gaps === undefined ? "needs the archive" : t.gaps.map(gapText).join("; ") || "none" }))));
});

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 1000);
  const fn = pages[document.body.dataset.page];
  if (fn) fn();
});
