// netmeta UI: vanilla JS over the query API. State (KQL, time range, refresh) lives in the
// URL, so every view is a link; each panel is one POST /api/aggregate.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const fmt = new Intl.NumberFormat("en");
const PAGE = document.body.dataset.page;
let refreshTimer = null;

// ------------------------------------------------------------------ state and API

function state() {
  const p = new URLSearchParams(location.search);
  return { q: p.get("q") || "", from: p.get("from") || "now-24h", to: p.get("to") || "now",
           refresh: p.get("refresh") || "0" };
}

function setState(changes, push = true) {
  const p = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === "") p.delete(k); else p.set(k, v);
  }
  const url = location.pathname + "?" + p.toString();
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  initToolbarValues();
  load();
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); throw new Error("login needed"); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function showError(msg) {
  const e = $("#error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

function and(...parts) {
  const p = parts.filter(x => x && x.trim());
  return p.length ? p.map(x => p.length > 1 ? `(${x})` : x).join(" and ") : "";
}

function quote(v) {
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

function addFilter(field, value, exclude = false) {
  const clause = `${exclude ? "not " : ""}${field}:${quote(value)}`;
  setState({ q: and(state().q, clause) });
}

function display(v) {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.map(display).join(" · ");
  if (typeof v === "number") return fmt.format(v);
  return String(v);
}

// ------------------------------------------------------------------ toolbar

function initToolbar() {
  const s = state();
  $("#kql").value = s.q;
  const range = $("#range");
  const relative = [...range.options].some(o => o.value === s.from) && s.to === "now";
  range.value = relative ? s.from : "absolute";
  $("#absolute").hidden = relative;
  if (!relative) {
    $("#abs-from").value = s.from.replace("Z", "").slice(0, 19);
    $("#abs-to").value = s.to === "now" ? "" : s.to.replace("Z", "").slice(0, 19);
  }
  $("#refresh").value = s.refresh;
  for (const a of document.querySelectorAll("#nav a[data-nav]")) {
    const nav = a.dataset.nav;
    if (nav === PAGE || nav === document.body.dataset.dashboard) a.classList.add("active");
    a.addEventListener("click", ev => {  // keep query and time range across pages
      ev.preventDefault();
      const p = new URLSearchParams(location.search);
      location.href = a.getAttribute("href") + (p.toString() ? "?" + p : "");
    });
  }
  if (document.body.dataset.auth !== "on") $("#logout").remove();
  range.addEventListener("change", () => { $("#absolute").hidden = range.value !== "absolute"; });
  $("#queryform").addEventListener("submit", ev => {
    ev.preventDefault();
    hideSuggest();
    const changes = { q: $("#kql").value.trim(), refresh: $("#refresh").value };
    if (range.value === "absolute") {
      const f = $("#abs-from").value, t = $("#abs-to").value;
      changes.from = f ? f + "Z" : "now-24h";
      changes.to = t ? t + "Z" : "now";
    } else { changes.from = range.value; changes.to = "now"; }
    setState(changes);
  });
  initSuggest();
  window.addEventListener("popstate", () => { initToolbarValues(); load(); });
}

function initToolbarValues() {
  const s = state();
  $("#kql").value = s.q;
}

// ------------------------------------------------------------------ KQL autocompletion

let fieldList = null;
let suggestIndex = -1;

async function fields() {
  if (fieldList === null) {
    const s = state();
    try { fieldList = (await api(`/api/fields?from=${encodeURIComponent(s.from)}&to=${encodeURIComponent(s.to)}`)).fields; }
    catch (e) { fieldList = []; }
  }
  return fieldList;
}

function currentToken(input) {
  const upto = input.value.slice(0, input.selectionStart);
  const m = upto.match(/([A-Za-z0-9_@.\-]*)(:\s*("?)([^"()\s]*))?$/);
  return { text: m[0], field: m[1], value: m[2] !== undefined ? m[4] : null, start: upto.length - m[0].length };
}

function hideSuggest() { $("#suggest").hidden = true; suggestIndex = -1; }

async function suggest() {
  const input = $("#kql");
  const tok = currentToken(input);
  const list = $("#suggest");
  let items = [];
  if (tok.value === null) {
    if (!tok.field) return hideSuggest();
    const all = await fields();
    items = all.filter(f => f.name.startsWith(tok.field) && f.name !== tok.field).slice(0, 12)
      .map(f => ({ label: f.name, hint: f.type, insert: f.name + ":" }));
  } else {
    const s = state();
    try {
      const r = await api("/api/aggregate", { q: "", from: s.from, to: s.to,
        aggs: { type: "terms", field: tok.field, size: 10 } });
      items = r.buckets.filter(b => String(b.key).startsWith(tok.value))
        .map(b => ({ label: String(b.key), hint: fmt.format(b.value), insert: `${tok.field}:${quote(b.key)} ` }));
    } catch (e) { items = []; }
  }
  list.replaceChildren(...items.map((it, i) => el("li", {
    "data-i": i, onmousedown: ev => { ev.preventDefault(); accept(it, tok); } },
    it.label, el("small", { text: it.hint }))));
  list.items = items; list.tok = tok;
  list.hidden = items.length === 0;
  suggestIndex = -1;
}

function accept(item, tok) {
  const input = $("#kql");
  const before = input.value.slice(0, tok.start), after = input.value.slice(input.selectionStart);
  input.value = before + item.insert + after;
  const pos = (before + item.insert).length;
  input.setSelectionRange(pos, pos);
  input.focus();
  hideSuggest();
  if (item.insert.endsWith(":")) suggest();
}

function initSuggest() {
  const input = $("#kql");
  let timer = null;
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(suggest, 120); });
  input.addEventListener("blur", () => setTimeout(hideSuggest, 100));
  input.addEventListener("keydown", ev => {
    const list = $("#suggest");
    if (list.hidden) return;
    const n = list.items.length;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      suggestIndex = (suggestIndex + (ev.key === "ArrowDown" ? 1 : n - 1)) % n;
      [...list.children].forEach((li, i) => li.classList.toggle("sel", i === suggestIndex));
    } else if ((ev.key === "Enter" || ev.key === "Tab") && suggestIndex >= 0) {
      ev.preventDefault();
      accept(list.items[suggestIndex], list.tok);
    } else if (ev.key === "Escape") hideSuggest();
  });
}

// ------------------------------------------------------------------ charts

const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

function timeseries(div, r, opts = {}) {
  const scale = opts.percent ? 100 : 1;
  // a bar spans its bucket [key, key + interval): drawn at the bucket's middle, as wide as
  // the bucket; the axis spans the range asked (from/to), not only the buckets with events
  const width = r.interval_ms || (r.interval || 1) * 1000;
  const mid = key => Date.parse(key) + width / 2;
  let traces;
  if (r.buckets.length && r.buckets[0].sub) {
    const series = new Map();
    for (const b of r.buckets) for (const s of b.sub) {
      const k = String(s.key);
      if (!series.has(k)) series.set(k, { x: [], y: [] });
      series.get(k).x.push(mid(b.key)); series.get(k).y.push(s.value * scale);
    }
    traces = [...series].map(([name, d]) => ({ type: "bar", name, x: d.x, y: d.y, width: width * 0.9 }));
  } else {
    traces = [{ type: opts.line ? "scatter" : "bar", x: r.buckets.map(b => mid(b.key)),
                y: r.buckets.map(b => (b.value || 0) * scale), width: width * 0.9, marker: { color: "#54aeff" } }];
  }
  const range = r.from && r.to ? [Date.parse(r.from), Date.parse(r.to)] : undefined;
  Plotly.newPlot(div, traces, {
    barmode: "stack", margin: { l: 50, r: 10, t: 10, b: 30 }, showlegend: traces.length > 1,
    legend: { orientation: "h", y: -0.2 }, xaxis: { type: "date", range, autorange: !range },
    yaxis: { ticksuffix: opts.percent ? "%" : "" }, bargap: 0.1,
  }, PLOT_CONFIG);
  div.dataset.interval = String(width);
  if (opts.onRange) div.on("plotly_relayout", ev => {
    const a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
    if (a && b) opts.onRange(new Date(String(a).replace(" ", "T") + "Z").toISOString(), new Date(String(b).replace(" ", "T") + "Z").toISOString());
  });
}

function pie(div, r, field) {
  Plotly.newPlot(div, [{ type: "pie", hole: 0.45, labels: r.buckets.map(b => String(b.key)),
    values: r.buckets.map(b => b.value), textinfo: "label+percent", sort: false }],
    { margin: { l: 10, r: 10, t: 10, b: 10 }, showlegend: false }, PLOT_CONFIG);
  div.on("plotly_click", ev => addFilter(field, r.buckets[ev.points[0].pointNumber].key));
}

function bars(body, r, field, scale = 1) {
  const max = Math.max(...r.buckets.map(b => b.value || 0), 1);
  const t = el("table", { class: "bars" });
  for (const b of r.buckets) {
    const row = el("tr", { class: "clickable", title: "filter on this value",
      onclick: () => addFilter(Array.isArray(field) ? field[0] : field, Array.isArray(b.key) ? b.key[0] : b.key) },
      el("td", { text: display(b.key) }),
      el("td", { class: "bar" }, el("div", { class: "fill", style: `width:${100 * (b.value || 0) / max}%` })),
      el("td", { class: "num", text: display(typeof b.value === "number" ? b.value * scale : b.value) }));
    t.append(row);
  }
  body.append(t);
}

function table(body, r, panel) {
  const fieldsOf = Array.isArray(panel.aggs.field) ? panel.aggs.field : [panel.aggs.field];
  const sub = panel.aggs.sub;
  const head = [...fieldsOf, ...(sub ? [sub.field] : []), metricName(panel.aggs.metric)];
  const t = el("table", { class: "data" }, el("tr", {}, ...head.map(h => el("th", { text: h }))));
  const scale = panel.scale || 1;
  const val = v => typeof v === "number" ? display(v * scale) : display(v);
  for (const b of r.buckets) {
    const keys = Array.isArray(b.key) ? b.key : [b.key];
    const cells = keys.map((k, i) => el("td", { class: "clickable", title: "filter on this value",
      onclick: () => addFilter(fieldsOf[i], k), text: display(k) }));
    if (sub) {
      for (const s of b.sub.length ? b.sub : [{ key: "", value: b.value }]) {
        t.append(el("tr", {}, ...cells.map(c => c.cloneNode(true)), el("td", { text: display(s.key) }),
          el("td", { class: "num", text: val(s.value) })));
      }
    } else t.append(el("tr", {}, ...cells, el("td", { class: "num", text: val(b.value) })));
  }
  body.append(t);
}

function metricName(m) { return !m || m.type === "count" ? "events" : `${m.type}(${m.field || ""})`; }

let worldSvg = null;
async function worldMap(body, r, field) {
  if (worldSvg === null) worldSvg = await (await fetch("/vendor/worldmap.svg")).text();
  const wrap = el("div", { class: "map" });
  wrap.innerHTML = worldSvg;
  const svg = wrap.querySelector("svg");
  svg.removeAttribute("width"); svg.removeAttribute("height");
  const max = Math.max(...r.buckets.map(b => b.value), 1);
  for (const b of r.buckets) {
    const g = wrap.querySelector(`g.${String(b.key).toLowerCase()}`);
    if (!g) continue;
    const shade = 0.2 + 0.8 * Math.log1p(b.value) / Math.log1p(max);
    for (const p of g.querySelectorAll("path")) p.style.fill = `rgba(9, 105, 218, ${shade.toFixed(2)})`;
    const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
    tip.textContent = `${b.key}: ${fmt.format(b.value)}`;
    g.append(tip);
    g.addEventListener("click", () => addFilter(field, b.key));
  }
  body.append(wrap);
  if (r.buckets.length) bars(body, { buckets: r.buckets.slice(0, 5) }, field);
}

// ------------------------------------------------------------------ dashboards

let dashboardDefs = null;

async function renderDashboard() {
  if (dashboardDefs === null) dashboardDefs = (await api("/api/dashboards")).dashboards;
  const d = dashboardDefs[document.body.dataset.dashboard];
  const s = state();
  const grid = el("div", { class: "grid" });
  $("#content").replaceChildren(grid);
  const jobs = d.panels.map(async (p, i) => {
    const body = el("div", { class: "body" });
    const panel = el("div", { class: `panel${p.width === 2 ? " w2" : ""}`, "data-panel": i },
      el("h2", { text: p.title }), body);
    grid.append(panel);
    try {
      const r = await api("/api/aggregate", { q: and(d.filter, p.filter, s.q), from: s.from, to: s.to, aggs: p.aggs });
      await drawPanel(body, p, r);
      panel.dataset.state = "done";
    } catch (e) {
      body.append(el("div", { class: "empty", text: "error: " + e.message }));
      panel.dataset.state = "error";
    }
  });
  await Promise.all(jobs);
  document.body.dataset.loaded = String(Date.now());
}

async function drawPanel(body, p, r) {
  if (p.kind === "metric") {
    const v = r.value;
    body.append(el("div", { class: "metric", text: v === null ? "–" : p.percent ? (100 * v).toFixed(1) + " %" : fmt.format(v) }));
    return;
  }
  if (!r.buckets || !r.buckets.length) { body.append(el("div", { class: "empty", text: "no data in this range" })); return; }
  const field = p.aggs.field || (p.aggs.sub && p.aggs.sub.field);
  if (p.kind === "timeseries") {
    const div = el("div", { class: "chart" }); body.append(div);
    timeseries(div, r, { percent: p.percent, line: !!p.percent,
      onRange: (a, b) => setState({ from: a, to: b }) });
  } else if (p.kind === "pie") {
    const div = el("div", { class: "chart" }); body.append(div);
    pie(div, r, field);
  } else if (p.kind === "bars") bars(body, r, field, p.scale || 1);
  else if (p.kind === "table") table(body, r, p);
  else if (p.kind === "map") return worldMap(body, r, field);
}

// ------------------------------------------------------------------ search

const COLUMNS = ["@timestamp", "_input", "event.action", "source.ip", "source.port", "destination.ip",
                 "destination.port", "network.transport", "network.protocol", "network.bytes"];

function pick(doc, dotted) {
  let cur = doc;
  for (const part of dotted.split(".")) {
    if (cur === null || typeof cur !== "object" || !(part in cur)) return doc[dotted];
    cur = cur[part];
  }
  return cur;
}

function flatten(doc, prefix = "", out = []) {
  for (const [k, v] of Object.entries(doc)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v, prefix + k + ".", out);
    else out.push([prefix + k, v]);
  }
  return out;
}

function pivotQuery(doc) {
  // the same connection in every source: its community id, or its 5-tuple either way round
  // (sources that carry no community id, e.g. Gigamon AMI, still match)
  const cid = pick(doc, "network.community_id");
  const sip = pick(doc, "source.ip"), dip = pick(doc, "destination.ip");
  const sp = pick(doc, "source.port"), dp = pick(doc, "destination.port");
  const parts = [];
  if (cid) parts.push(`network.community_id:${quote(cid)}`);
  if (sip && dip && sp && dp) {
    parts.push(`(source.ip:${quote(sip)} and source.port:${sp} and destination.ip:${quote(dip)} and destination.port:${dp})`);
    parts.push(`(source.ip:${quote(dip)} and source.port:${dp} and destination.ip:${quote(sip)} and destination.port:${sp})`);
  }
  return parts.join(" or ");
}

function docRow(doc, span) {
  const rows = flatten(doc).sort((a, b) => a[0].localeCompare(b[0])).map(([k, v]) => el("tr", {},
    el("td", { class: "k", text: k }),
    el("td", {}, el("span", { text: Array.isArray(v) ? JSON.stringify(v) : String(v) }),
      el("button", { class: "filter-in", title: "filter on this value", text: "+",
        onclick: () => addFilter(k, Array.isArray(v) ? v[0] : v) }),
      el("button", { class: "filter-out", title: "exclude this value", text: "−",
        onclick: () => addFilter(k, Array.isArray(v) ? v[0] : v, true) }))));
  const pivot = pivotQuery(doc);
  const actions = el("div", { class: "actions" });
  if (pivot) actions.append(el("button", { class: "pivot", text: "Same connection in every source (community id)",
    onclick: () => setState({ q: pivot }) }));
  return el("tr", { class: "doc" }, el("td", { colspan: span }, actions, el("table", {}, ...rows)));
}

let nextCursor = null;

async function renderSearch(append = false) {
  const s = state();
  const content = $("#content");
  const params = new URLSearchParams({ q: s.q, from: s.from, to: s.to, limit: "50" });
  if (!append) {
    nextCursor = null;
    const hist = el("div", { id: "histogram" });
    const summary = el("div", { class: "summary", id: "summary", text: "searching…" });
    const t = el("table", { class: "data", id: "hits" },
      el("tr", {}, ...COLUMNS.map(c => el("th", { text: c }))));
    const more = el("button", { id: "more", hidden: "", text: "Load more", onclick: () => renderSearch(true) });
    content.replaceChildren(hist, summary, t, more);
    const hr = await api("/api/aggregate", { q: s.q, from: s.from, to: s.to, aggs: { type: "date_histogram", interval: "auto" } });
    timeseries(hist, hr, { onRange: (a, b) => setState({ from: a, to: b }) });
  } else if (nextCursor) params.set("cursor", nextCursor);
  const r = await api("/api/search?" + params);
  nextCursor = r.next;
  const t = $("#hits");
  for (const doc of r.hits) {
    const row = el("tr", { class: "hit" }, ...COLUMNS.map(c => el("td", { text: display(c === "_input" ? inputOf(doc) : pick(doc, c)) })));
    row.addEventListener("click", () => {
      if (row.nextSibling && row.nextSibling.classList && row.nextSibling.classList.contains("doc")) row.nextSibling.remove();
      else row.after(docRow(doc, COLUMNS.length));
    });
    t.append(row);
  }
  const shown = t.querySelectorAll("tr.hit").length;
  if (r.total !== null) $("#summary").textContent = `${fmt.format(r.total)} events match; ${shown} shown (newest first). Click a row for the whole ECS document.`;
  $("#more").hidden = !nextCursor;
  document.body.dataset.loaded = String(Date.now());
}

function inputOf(doc) { return doc._input || (doc.event && doc.event.dataset) || ""; }

// ------------------------------------------------------------------ exporters and failures

function ago(iso) {
  if (!iso) return "";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

async function renderExporters() {
  const s = state();
  const r = await api(`/api/exporters?from=${encodeURIComponent(s.from)}&to=${encodeURIComponent(s.to)}`);
  const head = ["exporter", "input", "health", "last event", "flows stored", "flows/s (range)", "sampling",
                "templates", "datagrams (live)", "records/s (live)", "lost", "resets"];
  const t = el("table", { class: "data", id: "exporters" }, el("tr", {}, ...head.map(h => el("th", { text: h }))));
  for (const x of r.exporters) {
    const live = x.live || {};
    const stale = !x.last_event || (Date.now() - Date.parse(x.last_event)) > 15 * 60 * 1000;
    const health = live.lost > 0 ? ["warn", `loss ${fmt.format(live.lost)}`] : stale ? ["warn", "quiet"] : ["ok", "ok"];
    const tmpl = x.templates.map(tp => `${tp.options ? "options " : ""}${tp.id} (domain ${tp.domain}, ${tp.fields} fields)`).join(", ");
    t.append(el("tr", {},
      el("td", { text: x.exporter }), el("td", { text: x.input }),
      el("td", {}, el("span", { class: `badge ${health[0]}`, text: health[1] })),
      el("td", { text: `${x.last_event || ""} ${x.last_event ? "(" + ago(x.last_event) + ")" : ""}` }),
      el("td", { class: "num", text: fmt.format(x.events) }),
      el("td", { class: "num", text: x.events_per_s.toFixed(3) }),
      el("td", { class: "num", text: x.sampling_rate ? "1:" + x.sampling_rate : "–" }),
      el("td", { text: tmpl || "–" }),
      el("td", { class: "num", text: live.datagrams !== undefined ? fmt.format(live.datagrams) : "–" }),
      el("td", { class: "num", text: live.records_per_s !== undefined ? live.records_per_s.toFixed(1) : "–" }),
      el("td", { class: "num", text: live.lost !== undefined ? fmt.format(live.lost) : "–" }),
      el("td", { class: "num", text: live.resets !== undefined ? fmt.format(live.resets) : "–" })));
  }
  const note = el("p", { class: "summary", text: r.exporters.length ? "Stored flows are counted over the time range; live columns since serve started." : "No NetFlow/IPFIX/sFlow exporter in this range." });
  $("#content").replaceChildren(note, t);
  document.body.dataset.loaded = String(Date.now());
}

async function renderFailures() {
  const r = await api("/api/failures?limit=200");
  const t = el("table", { class: "data", id: "failures" },
    el("tr", {}, ...["time", "input", "error", "original", "where"].map(h => el("th", { text: h }))));
  for (const f of r.failures) {
    t.append(el("tr", {}, el("td", { text: f["@timestamp"] }), el("td", { text: f._input }),
      el("td", { text: f["error.message"] }),
      el("td", {}, el("pre", { text: (f["event.original"] || "").slice(0, 2000) })),
      el("td", { text: f["log.file.path"] ? `${f["log.file.path"]}:${f["log.offset"]}` : "" })));
  }
  const note = el("p", { class: "summary", text: `${r.failures.length} recent failure(s): records that could not become events, kept with their original.` });
  $("#content").replaceChildren(note, t);
  document.body.dataset.loaded = String(Date.now());
}

// ------------------------------------------------------------------ main

async function load() {
  showError("");
  fieldList = null;
  clearInterval(refreshTimer);
  const s = state();
  try {
    if (PAGE === "dashboard") await renderDashboard();
    else if (PAGE === "search") await renderSearch();
    else if (PAGE === "exporters") await renderExporters();
    else if (PAGE === "failures") await renderFailures();
  } catch (e) { showError(e.message); document.body.dataset.loaded = String(Date.now()); }
  const every = parseInt(s.refresh, 10);
  if (every > 0) refreshTimer = setInterval(load, every * 1000);
}

initToolbar();
load();
