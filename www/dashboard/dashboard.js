// ustack live dashboard: reads /ws/stats (one JSON document per second, the
// same as /api/stats), keeps a short history per connection, and draws
// everything with plain DOM and SVG (no library; works offline).
"use strict";

const MAX_SAMPLES = 600;          // per connection (10 minutes at 1/s)
const FORGET_AFTER_MS = 120000;   // history of a vanished connection
const hist = new Map();           // key "id|remote" -> {first, samples:[], lastSeen, info}
let selected = null;              // key of the plotted connection
let lastDoc = null;
let ws = null, pollTimer = null, retry = 0;
let ladderAsked = null;           // the selection last sent over /ws/stats ("id|remote")
let ladderShown = null;           // the connection whose diagram is drawn

const $ = (id) => document.getElementById(id);
const el = (tag, attrs, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const SVGNS = "http://www.w3.org/2000/svg";
const sv = (tag, attrs, text) => {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

function fmtBytes(n) {
  if (n === null || n === undefined || n < 0) return "∞";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + " KiB";
  if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
  return (n / 1073741824).toFixed(2) + " GiB";
}
function fmtUs(us) {
  if (us === null || us === undefined) return "—";
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}
function fmtCount(n) { return n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n); }
function fmtMs(ms) { const s = ms / 1000; return s < 600 ? s.toFixed(3) + " s" : (s / 60).toFixed(1) + " min"; }

// ---------------------------------------------------------------- data flow

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  try { ws = new WebSocket(proto + "//" + location.host + "/ws/stats"); }
  catch (e) { startPolling(); return; }
  setStatus("connecting", "connecting…");
  ws.onopen = () => { retry = 0; stopPolling(); setStatus("open", "live (WebSocket)"); ladderAsked = null; askLadder(); };
  ws.onmessage = (m) => { try { update(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  ws.onclose = () => {
    setStatus("closed", "disconnected — retrying");
    startPolling();
    retry = Math.min(retry + 1, 5);
    setTimeout(connect, 1000 * retry);
  };
}
function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(() => {
    fetch("/api/stats", { cache: "no-store" }).then((r) => r.json()).then((d) => {
      if (!ws || ws.readyState !== 1) setStatus("polling", "live (polling /api/stats)");
      update(d);
      pollLadder();
    }).catch(() => {});
  }, 1000);
}
function stopPolling() { if (pollTimer) { clearInterval(pollTimer); pollTimer = null; } }
function setStatus(state, text) { const s = $("status"); s.dataset.ws = state; s.textContent = text; }

function keyOf(c) { return c.id + "|" + c.remote; }

function update(d) {
  lastDoc = d;
  const now = d.uptime_ms;
  for (const c of d.connections || []) {
    const k = keyOf(c);
    let h = hist.get(k);
    if (!h) { h = { first: now, samples: [] }; hist.set(k, h); }
    h.lastSeen = now; h.info = c;
    h.samples.push({ t: now, out: c.bytes_out, in: c.bytes_in, cwnd: c.cwnd, ssthresh: c.ssthresh,
                     srtt: c.srtt_us, rto: c.rto_us, state: c.state });
    if (h.samples.length > MAX_SAMPLES) h.samples.shift();
  }
  for (const [k, h] of hist) if (now - h.lastSeen > FORGET_AFTER_MS) hist.delete(k);
  const live = new Set((d.connections || []).map(keyOf));
  // Keep the selection; otherwise plot the busiest live connection.
  if (!selected || !hist.has(selected)) {
    let best = null, most = -1;
    for (const c of d.connections || []) {
      const b = c.bytes_out + c.bytes_in;
      if (b > most) { most = b; best = keyOf(c); }
    }
    selected = best;
  }
  renderMeta(d); renderCards(d); renderConns(d, live); renderPlots(); renderTransitions(d);
  renderDrops(d); renderImpair(d);
  askLadder();
  if (d.ladder) renderLadder(d.ladder);
}

// ---------------------------------------------------------------- rendering

function renderMeta(d) {
  $("meta").textContent = `${d.addr} · up ${fmtMs(d.uptime_ms)} · seed ${d.seed}`;
}

function renderCards(d) {
  const t = d.tcp || {};
  const cards = [
    ["live connections", fmtCount(t.connections_live ?? (d.connections || []).length)],
    ["packets in / out", fmtCount(d.packets_in) + " / " + fmtCount(d.packets_out)],
    ["bytes in / out", fmtBytes(d.bytes_in) + " / " + fmtBytes(d.bytes_out)],
    ["segments in / out", fmtCount(t.segments_in) + " / " + fmtCount(t.segments_out)],
    ["retransmissions", fmtCount(t.retransmissions) + (t.fast_retransmissions ? ` (${t.fast_retransmissions} fast)` : "")],
    ["RTO timeouts", fmtCount(t.rto_timeouts)],
    ["RSTs in / out", fmtCount(t.rsts_received) + " / " + fmtCount(t.rsts_sent)],
    ["drops", fmtCount(d.drops_total)],
  ];
  const box = $("cards");
  box.replaceChildren(...cards.map(([k, v]) => {
    const c = el("div", { class: "card" });
    c.append(el("div", { class: "k" }, k), el("div", { class: "v" }, v));
    return c;
  }));
}

function renderConns(d, live) {
  const rows = $("conn-rows");
  const list = (d.connections || []).slice().sort((a, b) => a.id - b.id);
  if (list.length === 0) {
    rows.replaceChildren(Object.assign(el("tr", { class: "empty" }), { innerHTML: '<td colspan="14">no connections</td>' }));
    return;
  }
  rows.replaceChildren(...list.map((c) => {
    const k = keyOf(c);
    const tr = el("tr", { "data-key": k, "data-state": c.state, "data-remote": c.remote });
    if (k === selected) tr.classList.add("sel");
    const st = el("span", { class: "st " + c.state }, c.state);
    const cells = [c.id, c.local, c.remote, st, fmtBytes(c.bytes_in), fmtBytes(c.bytes_out), fmtUs(c.srtt_us),
                   fmtUs(c.rto_us), fmtBytes(c.cwnd), fmtBytes(c.ssthresh), fmtBytes(c.snd_wnd), fmtBytes(c.rcv_wnd),
                   c.retransmissions, c.mss];
    for (const v of cells) { const td = el("td"); if (v instanceof Node) td.append(v); else td.textContent = v; tr.append(td); }
    tr.onclick = () => { selected = k; renderConns(lastDoc, live); renderPlots(); renderTransitions(lastDoc); askLadder(); };
    return tr;
  }));
}

// A line plot. series: [{label, color, pts:[[x,y]], dash, step}]; x in seconds.
function plot(svg, series, yfmt, empty) {
  const W = 420, H = 220, L = 58, R = 10, T = 22, B = 26;
  svg.replaceChildren();
  const all = series.flatMap((s) => s.pts);
  if (all.length === 0) { svg.append(sv("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, empty)); return; }
  let x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]));
  if (x1 - x0 < 1) x1 = x0 + 1;
  let y1 = Math.max(...all.map((p) => p[1])) * 1.08; if (!(y1 > 0)) y1 = 1;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = (y) => H - B - y / y1 * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y1 * i / 4;
    svg.append(sv("line", { x1: L, x2: W - R, y1: Y(y), y2: Y(y), class: "grid" }));
    svg.append(sv("text", { x: L - 4, y: Y(y) + 3, "text-anchor": "end" }, yfmt(y)));
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + (x1 - x0) * i / 4;
    svg.append(sv("text", { x: X(x), y: H - B + 13, "text-anchor": "middle" }, (x - x0).toFixed(x1 - x0 < 8 ? 1 : 0) + "s"));
  }
  svg.append(sv("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.append(sv("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  let lx = L + 4;
  for (const s of series) {
    if (s.pts.length === 0) continue;
    let d = "";
    s.pts.forEach((p, i) => {
      if (i === 0) d += `M${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`;
      else if (s.step) d += `H${X(p[0]).toFixed(1)}V${Y(p[1]).toFixed(1)}`;
      else d += `L${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`;
    });
    const path = sv("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.8, "stroke-linejoin": "round" });
    if (s.dash) path.setAttribute("stroke-dasharray", "4 3");
    svg.append(path);
    if (s.pts.length < 40) for (const p of s.pts) svg.append(sv("circle", { cx: X(p[0]), cy: Y(p[1]), r: 1.8, fill: s.color }));
    svg.append(sv("rect", { x: lx, y: 6, width: 10, height: 3, fill: s.color }));
    const label = sv("text", { x: lx + 13, y: 11 }, s.label);
    svg.append(label);
    lx += 20 + s.label.length * 6.2;
  }
}

function renderPlots() {
  const h = selected && hist.get(selected);
  const name = $("sel-name");
  if (!h) {
    name.textContent = "— (open one, e.g. curl --limit-rate 100k http://ADDR/bytes/5000000)";
    for (const id of ["plot-seq", "plot-cwnd", "plot-rtt"]) plot($(id), [], String, "no connection selected");
    return;
  }
  const c = h.info;
  name.textContent = `#${c.id} ${c.local} ⇄ ${c.remote} (${c.state})`;
  const t = (s) => s.t / 1000;
  const S = h.samples;
  plot($("plot-seq"), [
    { label: "bytes sent", color: "#0b57d0", pts: S.map((s) => [t(s), s.out]) },
    { label: "bytes received", color: "#15803d", dash: true, pts: S.map((s) => [t(s), s.in]) },
  ], fmtBytes, "no data");
  plot($("plot-cwnd"), [
    { label: "cwnd", color: "#b45309", step: true, pts: S.map((s) => [t(s), s.cwnd]) },
    { label: "ssthresh", color: "#7c3aed", dash: true, step: true, pts: S.filter((s) => s.ssthresh >= 0).map((s) => [t(s), s.ssthresh]) },
  ], fmtBytes, "no data");
  plot($("plot-rtt"), [
    { label: "SRTT", color: "#0e7490", pts: S.filter((s) => s.srtt !== null).map((s) => [t(s), s.srtt]) },
    { label: "RTO", color: "#b91c1c", dash: true, step: true, pts: S.map((s) => [t(s), s.rto]) },
  ], fmtUs, "no RTT sample yet");
}

function renderTransitions(d) {
  const list = $("transitions");
  const tr = (d.transitions || []).slice().reverse();
  const sel = selected && hist.get(selected);
  // The selected connection's transitions first, then everybody's.
  const mine = sel ? tr.filter((x) => x.id === sel.info.id && x.remote === sel.info.remote) : [];
  const items = [];
  const line = (x) => {
    const li = el("li", { "data-to": x.to });
    li.append(el("span", { class: "t" }, fmtMs(x.t_ms)), document.createTextNode(" "),
              el("span", { class: "who" }, `#${x.id} ${x.remote} `),
              el("span", { class: "st " + x.from }, x.from), document.createTextNode(" → "),
              el("span", { class: "st " + x.to }, x.to));
    return li;
  };
  if (mine.length) { items.push(el("li", { class: "empty" }, "selected connection:")); mine.forEach((x) => items.push(line(x))); items.push(el("li", { class: "empty" }, "all connections:")); }
  tr.forEach((x) => items.push(line(x)));
  if (items.length === 0) items.push(el("li", { class: "empty" }, "none yet"));
  list.replaceChildren(...items);
}

function renderDrops(d) {
  const rows = $("drop-rows");
  const e = Object.entries(d.drops || {}).sort((a, b) => b[1] - a[1]);
  if (e.length === 0) { rows.replaceChildren(Object.assign(el("tr", { class: "empty" }), { innerHTML: "<td>no drops</td>" })); return; }
  const max = e[0][1];
  rows.replaceChildren(...e.map(([k, v]) => {
    const tr = el("tr", { "data-reason": k });
    const bar = el("span", { class: "bar", style: `width:${Math.max(2, 120 * v / max)}px` });
    const td = el("td"); td.append(bar, document.createTextNode(k));
    tr.append(td, el("td", {}, fmtCount(v)));
    return tr;
  }));
}

function renderImpair(d) {
  const dev = d.device || {};
  $("impair").textContent = dev.impairment ? dev.impairment : "none (--impair not given)";
  const rows = Object.entries(dev).filter(([k, v]) => k !== "impairment" && typeof v === "number" && v > 0);
  $("fault-rows").replaceChildren(...rows.map(([k, v]) => {
    const tr = el("tr"); tr.append(el("td", {}, k.replace(/^fault_/, "")), el("td", {}, fmtCount(v))); return tr;
  }));
}

// ---------------------------------------------------------------- ladder
// The ladder diagram of the selected connection is drawn by ustack itself
// (src/ladder, the code behind `ustack ladder --svg`) from the segments it
// recorded. Over the WebSocket the page says which connection it shows
// ({"ladder": id, "remote": "a.b.c.d:port"}) and every push then carries
// doc.ladder, with a new SVG when segments were recorded since the last
// one; while polling, the page fetches /api/ladder itself.

function selectedInfo() { const h = selected && hist.get(selected); return h ? h.info : null; }

function ladderQuery(c, fmt, max) {
  return `/api/ladder?conn=${c.id}&remote=${encodeURIComponent(c.remote)}&format=${fmt}` + (max ? `&max=${max}` : "");
}

function askLadder() {
  const c = selectedInfo();
  if (!c || !ws || ws.readyState !== 1 || ladderAsked === selected) return;
  ladderAsked = selected;
  if (ladderShown !== selected) { $("ladder-status").dataset.state = "ok"; $("ladder-status").textContent = "loading…"; }
  ws.send(JSON.stringify({ ladder: c.id, remote: c.remote }));
}

function pollLadder() {
  const c = selectedInfo();
  if (!c || (ws && ws.readyState === 1)) return;
  fetch(ladderQuery(c, "svg"), { cache: "no-store" }).then((r) => r.ok ? r.text() : Promise.reject(r.status))
    .then((svg) => renderLadder({ id: c.id, remote: c.remote, state: c.state, changed: true, svg }))
    .catch(() => {});
}

function renderLadder(l) {
  const status = $("ladder-status");
  const c = selectedInfo();
  // A push for a connection the page no longer shows (the selection changed).
  if (!c || l.id !== c.id || (l.remote && l.remote !== c.remote)) return;
  const key = c.id + "|" + c.remote;
  $("ladder-name").textContent = `#${c.id} ${c.local} ⇄ ${c.remote}`;
  $("ladder-svg").href = ladderQuery(c, "svg", 2000);
  $("ladder-text").href = ladderQuery(c, "text", 2000);
  if (l.error) { status.dataset.state = "error"; status.textContent = l.error; return; }
  status.dataset.state = "ok";
  status.textContent = `${l.state || "closed"} · ${l.records ?? "?"} segments recorded` +
    (l.watched === false ? " (shared ring: the oldest may be overwritten)" : "") + " · live";
  if (!l.changed || !l.svg) return;
  const parsed = new DOMParser().parseFromString(l.svg, "image/svg+xml");
  const root = parsed.documentElement;
  if (!root || root.nodeName !== "svg") return;
  const box = $("ladder");
  // A shadow root keeps the diagram's own stylesheet away from the page's.
  const shadow = box.shadowRoot || box.attachShadow({ mode: "open" });
  // A new connection is shown from the top (the handshake); after that the
  // view follows the newest segments if it was scrolled to the end.
  const first = ladderShown !== key;
  const follow = !first && box.scrollTop > 0 && box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
  const style = document.createElement("style");
  style.textContent = "svg { display:block; width:100%; max-width:1100px; height:auto; }";
  shadow.replaceChildren(style, document.importNode(root, true));
  ladderShown = key;
  if (first) box.scrollTop = 0;
  else if (follow) box.scrollTop = box.scrollHeight;
}

renderPlots();
connect();
