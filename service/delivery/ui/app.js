// The logllm page: anomaly feed, window page, verdict chart. Log lines are untrusted input, so text only ever
// goes in through textContent (never innerHTML), and the server's Content-Security-Policy allows no inline
// script. With auth on, the token is asked once and kept in sessionStorage (this tab only).
"use strict";

const TOKEN_KEY = "logllm-token";
const COLORS = ["anomalous", "muted", "failed", "normal"];
let nextCursor = null;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const headers = Object.assign({ Accept: "application/json" }, (options && options.headers) || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options || {}, { headers }));
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("this service needs a bearer token");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.reason || response.status) + ": " + (body.message || ""));
  return body;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function topLine(record) {
  const top = (record.explanation || [])[0];
  return top ? (top.raw || top.line || top.message) : "";  // raw: the line as shipped (records since #12)
}

function windowLink(id) {
  const link = el("a", id);
  link.href = "#window=" + encodeURIComponent(id);
  return link;
}

function feedQuery(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  const source = $("f-source").value.trim();
  if (source) params.set("source", source);
  for (const [field, name] of [["f-since", "since"], ["f-until", "until"]]) {
    const value = $(field).value;
    if (value) params.set(name, String(new Date(value).getTime() / 1000));
  }
  if (cursor) params.set("cursor", cursor);
  return "/anomalies?" + params.toString();
}

// the verdict's reason, as an operator reads it: the model's score, or the novelty rule (issue 19)
const WHY = {
  model: "model",
  novel_template: "new template",
  known_anomalous_template: "known bad template",
  novel_transition: "new path",
  missing_step: "missing step",
  novel_count: "unusual count",
};
const why = (record) => WHY[record.reason] || "";

async function loadFeed(more) {
  const page = await api(feedQuery(more ? nextCursor : null));
  const body = $("feed").tBodies[0];
  if (!more) body.replaceChildren();
  for (const record of page.items) {
    const row = el("tr");
    row.dataset.window = record.id;
    const link = el("td");
    link.append(windowLink(record.id));
    row.append(el("td", when(record.scored_at)), el("td", record.source), link,
      el("td", record.score === null ? "" : record.score.toFixed(3)), el("td", why(record)),
      el("td", topLine(record), "line"));
    body.append(row);
  }
  nextCursor = page.next_cursor;
  $("older").hidden = !nextCursor;
}

async function loadChart() {
  const data = await api("/verdicts/per-minute?minutes=60");
  const svg = $("chart");
  svg.replaceChildren();
  const width = 600 / data.minutes;
  const totals = new Array(data.minutes).fill(0);
  for (const label of Object.keys(data.counts)) data.counts[label].forEach((n, i) => { totals[i] += n; });
  const top = Math.max(1, ...totals);
  const stacked = new Array(data.minutes).fill(0);
  for (const label of COLORS) {
    const counts = data.counts[label];
    if (!counts) continue;
    counts.forEach((n, i) => {
      if (!n) return;
      const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const height = (n / top) * 115;
      stacked[i] += height;
      bar.setAttribute("x", String(i * width));
      bar.setAttribute("y", String(120 - stacked[i]));
      bar.setAttribute("width", String(Math.max(1, width - 1)));
      bar.setAttribute("height", String(height));
      bar.setAttribute("class", label);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = n + " " + label + " at " + new Date((data.start + i * 60) * 1000).toLocaleTimeString();
      bar.append(title);
      svg.append(bar);
    });
  }
  const legend = $("legend");
  legend.replaceChildren();
  for (const label of COLORS) {
    const total = (data.counts[label] || []).reduce((a, b) => a + b, 0);
    legend.append(el("span", "", "swatch " + label), el("span", label + " " + total));
  }
}

// how each source is read and whether the model knows its lines (GET /sources)
function setting(s) {
  return s.value === null ? "(not decided yet)" : s.value + " (" + s.origin + ")";
}

async function loadSources() {
  const page = await api("/sources");
  const body = $("sources").tBodies[0];
  body.replaceChildren();
  for (const source of page.items) {
    const r = source.reading;
    const windows = r.window_mode.value === "session"
      ? "sessions by " + r.session_pattern.value + " (" + r.window_mode.origin + ")"
      : "fixed " + r.window_size.value + "/" + r.window_step.value + " (" + r.window_mode.origin + ")";
    const coverage = source.vocabulary_coverage === null ? "-" : (100 * source.vocabulary_coverage).toFixed(0) + "%";
    const state = [source.warning, source.warming_up ? "warming up until " + when(source.warm_up_until) : ""];
    const row = el("tr", undefined, source.unknown_to_model ? "unknown" : "");
    row.dataset.source = source.source;
    row.append(el("td", source.source), el("td", setting(r.log_format)), el("td", windows),
      el("td", source.lines + " in " + source.windows + " windows"), el("td", coverage),
      el("td", state.filter(Boolean).join(" · "), "state"));
    if (source.train) {  // unknown to the model and no model of its own: the command that trains one
      const hint = el("div", source.train.hint + ":", "train");
      hint.append(el("code", source.train.command));
      for (const missing of source.train.missing) hint.append(el("div", missing));
      row.lastChild.append(hint);
    }
    body.append(row);
  }
}

// what the session and window rules found, in words: a path, a step or a count no normal training window showed
function sessionFindings(novelty) {
  const end = (template, word) => (template === null ? word : "\u201c" + template + "\u201d");
  const paths = (novelty.transitions || []).map(([first, then]) =>
    "new path: " + end(first, "(session start)") + " \u2192 " + end(then, "(session end)"));
  const counts = (novelty.counts || []).map(([first, other, value]) =>
    other === null
      ? "unusual count: \u201c" + first + "\u201d \u00d7 " + value
      : "unusual count: \u201c" + first + "\u201d minus \u201c" + other + "\u201d = " + value);
  const steps = (novelty.missing || []).map(([first, then]) =>
    "missing step: \u201c" + first + "\u201d without \u201c" + then + "\u201d after it");
  return [...paths, ...steps, ...counts];
}

async function showWindow(id) {
  $("feed-view").hidden = true;
  $("window-view").hidden = false;
  $("w-id").textContent = id;
  $("w-feedback").textContent = "";
  const record = await api("/sequences/" + encodeURIComponent(id));
  const feedback = record.feedback ? " · feedback: " + record.feedback.label : "";
  $("w-summary").textContent = record.status + " · score " + (record.score === null ? "-" : record.score.toFixed(3)) +
    " (threshold " + (record.threshold === null ? "-" : record.threshold.toFixed(3)) + ") · " + record.n_lines +
    " lines · source " + record.source + " · scored " + when(record.scored_at) + feedback +
    (why(record) ? " · flagged by: " + why(record) : "");
  const novelty = record.novelty || { novel: [], known_anomalous: [] };
  $("w-findings").replaceChildren(...sessionFindings(novelty).map((text) => el("li", text)));
  const kinds = new Map(novelty.novel.map((m) => [m, "template never seen before"]));
  for (const m of novelty.known_anomalous) kinds.set(m, "template seen only in anomalous training windows");
  const weight = new Map();
  for (const c of record.explanation || []) weight.set(c.message, c.contribution);
  const strongest = Math.max(1e-9, ...Array.from(weight.values()));
  const list = $("w-lines");
  list.replaceChildren();
  for (const line of record.lines || []) {
    const item = el("li", line.raw || line.line);  // as shipped; old records have only line (the content)
    const contribution = weight.get(line.message) || 0;
    if (contribution > 0) {
      item.style.backgroundColor = "rgba(192, 57, 43, " + (0.1 + 0.6 * contribution / strongest).toFixed(3) + ")";
      item.title = "contribution " + contribution.toFixed(3);
    }
    if (kinds.has(line.message)) {
      item.classList.add("novel");
      item.title = (item.title ? item.title + "; " : "") + kinds.get(line.message);
    }
    list.append(item);
  }
}

async function sendFeedback(label, mute) {
  const id = decodeURIComponent(location.hash.slice("#window=".length));
  const result = await api("/sequences/" + encodeURIComponent(id) + "/feedback", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ label, mute }),
  });
  $("w-feedback").textContent = "saved: " + result.label + (result.mute_id ? " (muted " + result.mute_id + ")" : "");
}

async function route() {
  showError("");
  try {
    if (location.hash.startsWith("#window=")) {
      await showWindow(decodeURIComponent(location.hash.slice("#window=".length)));
    } else {
      $("window-view").hidden = true;
      $("feed-view").hidden = false;
      await Promise.all([loadFeed(false), loadChart(), loadSources()]);
    }
  } catch (err) {
    showError(err.message);
  }
}

function guarded(action) {
  return (event) => {
    if (event) event.preventDefault();
    action().catch((err) => showError(err.message));
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", guarded(async () => {
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("token-form").hidden = true;
    await route();
  }));
  $("filters").addEventListener("submit", guarded(() => loadFeed(false)));
  $("older").addEventListener("click", guarded(() => loadFeed(true)));
  $("b-normal").addEventListener("click", guarded(() => sendFeedback("normal", false)));
  $("b-mute").addEventListener("click", guarded(() => sendFeedback("normal", true)));
  $("b-confirm").addEventListener("click", guarded(() => sendFeedback("anomalous", false)));
  window.addEventListener("hashchange", route);
  route();
});
