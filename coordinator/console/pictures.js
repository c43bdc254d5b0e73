// Treaty console: the pictures (plain SVG, no dependencies). Each function takes data as the REST
// API gives it and returns an <svg> element; console.js puts it on the page. Every text from the
// API goes in through textContent. The elements carry data-* attributes naming what they show
// (a node's step and state, a bar's op and outcome), which the console's tests read.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function clip(text, n) {
  text = String(text);
  return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
}

// ---------------------------------------------------------------------------------------------
// Saga graph: steps as nodes, `after` as edges, laid out in levels (a step's level is one more
// than its deepest prerequisite's), left to right.

// The state a step is drawn in, from its action and compensation ops (either may be absent) and
// the transaction's status: compensated, refused, succeeded, running (tried without a definite
// answer yet, or compensating), pending (not called yet).
function stepState(action, compensate, txFinal) {
  if (compensate && compensate.status === "succeeded") return "compensated";
  if (compensate && compensate.attempts > 0 && !txFinal) return "running";
  if (action && action.status === "refused") return "refused";
  if (action && action.status === "succeeded") return "succeeded";
  if (action && action.attempts > 0 && !txFinal) return "running";
  return "pending";
}

// steps: [{name, after: [names], state, lines: [text...], detail: [text...]}]; onPick(step) on a
// click. Returns the <svg>.
function drawSagaGraph(steps, onPick) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const level = new Map();
  const levelOf = (s, seen) => {
    if (level.has(s.name)) return level.get(s.name);
    if (seen.has(s.name)) return 0;  // a cycle (definitions refuse them): draw it flat
    seen.add(s.name);
    let l = 0;
    for (const a of s.after || []) if (byName.has(a)) l = Math.max(l, levelOf(byName.get(a), seen) + 1);
    level.set(s.name, l);
    return l;
  };
  for (const s of steps) levelOf(s, new Set());
  const columns = [];
  for (const s of steps) (columns[level.get(s.name)] = columns[level.get(s.name)] || []).push(s);
  const W = 170, H = 54, GX = 60, GY = 18, PAD = 10;
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX;
  const pos = new Map();
  columns.forEach((col, x) => {
    const top = (height - (col.length * H + (col.length - 1) * GY)) / 2;
    col.forEach((s, y) => pos.set(s.name, { x: PAD + x * (W + GX), y: top + y * (H + GY) }));
  });
  const svg = svgEl("svg", { class: "saga-graph", width, height, viewBox: `0 0 ${width} ${height}`,
                             role: "img", "aria-label": "saga steps and their order" });
  const defs = svgEl("defs");
  // One marker per drawing: an id another (hidden) drawing also has would point at that one.
  const arrowId = "arrow-" + (++drawSagaGraph.count);
  const marker = svgEl("marker", { id: arrowId, viewBox: "0 0 10 10", refX: 10, refY: 5,
                                   markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svgEl("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }));
  defs.append(marker);
  svg.append(defs);
  for (const s of steps) {
    for (const a of s.after || []) {
      if (!pos.has(a)) continue;
      const p = pos.get(a), q = pos.get(s.name);
      const x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(svgEl("path", { class: "edge", "data-from": a, "data-to": s.name,
                                 d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
                                 "marker-end": `url(#${arrowId})` }));
    }
  }
  for (const s of steps) {
    const p = pos.get(s.name);
    const g = svgEl("g", { class: "node st-" + s.state, "data-step": s.name, "data-state": s.state,
                           transform: `translate(${p.x},${p.y})`, tabindex: 0 });
    g.append(svgEl("title", {}, [s.name].concat(s.detail || []).join("\n")));
    g.append(svgEl("rect", { width: W, height: H, rx: 7 }));
    g.append(svgEl("text", { x: 10, y: 20, class: "node-name" }, clip(s.name, 22)));
    (s.lines || []).slice(0, 2).forEach((line, i) =>
      g.append(svgEl("text", { x: 10, y: 36 + i * 13, class: "node-line" }, clip(line, 28))));
    if (onPick) {
      g.addEventListener("click", () => onPick(s));
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") onPick(s); });
    }
    svg.append(g);
  }
  return svg;
}

drawSagaGraph.count = 0;

// A saga transaction's steps, from its branches (ops "action" and "compensate" of each step).
function sagaStepsOfTransaction(tx) {
  const steps = new Map();
  for (const b of tx.branches) {
    if (!steps.has(b.id)) steps.set(b.id, { name: b.id, after: [], ops: {} });
    const s = steps.get(b.id);
    s.ops[b.op] = b;
    if (b.after) s.after = b.after;
  }
  const final = tx.status === "committed" || tx.status === "aborted";
  const describe = (label, op) => op ? label + " " + op.status + " \u00b7 " + op.attempts +
      (op.attempts === 1 ? " attempt" : " attempts") : label + ": none";
  return [...steps.values()].map((s) => {
    const a = s.ops.action, c = s.ops.compensate;
    const detail = [describe("action", a), describe("compensation", c)];
    for (const op of [a, c]) if (op && op.last_error) detail.push(op.op + " last error: " + op.last_error);
    return {
      name: s.name, after: s.after, state: stepState(a, c, final),
      lines: [stepState(a, c, final) + (a ? " \u00b7 " + a.attempts + "\u00d7" : ""),
              c ? "undo " + c.status + (c.attempts ? " \u00b7 " + c.attempts + "\u00d7" : "")
                : "no compensation"],
      detail,
    };
  });
}

// A definition's steps, as GET /v1/sagas/{name} gives them.
function sagaStepsOfDefinition(def) {
  return def.steps.map((st) => ({
    name: st.name, after: st.after || [], state: "definition",
    lines: [st.after && st.after.length ? "after " + st.after.join(", ") : "starts at once",
            st.compensate ? "compensable" : "forward only"],
    detail: ["action " + st.action, st.compensate ? "compensate " + st.compensate : "no compensation"]
        .concat(st.timeout_ms ? ["timeout " + st.timeout_ms + " ms"] : []),
  }));
}

// ---------------------------------------------------------------------------------------------
// Timeline: a transaction's calls on a time axis. One row per branch, one bar per call (its op
// and outcome), the decision log's changes as vertical lines, the decision thicker.

const FIRST_PHASE = new Set(["prepare", "try", "action"]);

function fmtMs(ms) {
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

// `width`: the room there is for it, in pixels (at least 420).
function drawTimeline(tx, width) {
  const rows = [];
  const rowOf = new Map();
  const bars = [];
  for (const b of tx.branches) {
    if (!rowOf.has(b.id)) { rowOf.set(b.id, rows.length); rows.push(b.id); }
    (b.calls || []).forEach((c, i) => {
      const start = Date.parse(c.started_at);
      // The calls kept are the latest: number them from the op's attempt count.
      bars.push({ branch: b.id, op: b.op, outcome: c.outcome, ms: c.ms, start, end: start + c.ms,
                  attempt: b.attempts - (b.calls.length - 1 - i) });
    });
  }
  const marks = (tx.log || []).map((e) => ({ at: Date.parse(e.at), to: e.to, from: e.from, reason: e.reason }));
  // The decision: the first change out of the undecided statuses.
  const decision = marks.find((m) => m.from && !["active", "prepared"].includes(m.to));
  const times = bars.flatMap((b) => [b.start, b.end]).concat(marks.map((m) => m.at));
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const LABEL = 110, ROW = 34, TOP = 28, PAD = 12;
  width = Math.max(420, Math.floor(width || 760));
  const W = width - LABEL - PAD * 2;
  const height = TOP + rows.length * ROW + 28;
  const x = (t) => LABEL + PAD + ((t - t0) / (t1 - t0)) * W;
  const svg = svgEl("svg", { class: "timeline", width, height, viewBox: `0 0 ${width} ${height}`,
                             role: "img", "aria-label": "branch calls over time" });
  rows.forEach((id, r) => {
    const y = TOP + r * ROW;
    svg.append(svgEl("rect", { class: "lane" + (r % 2 ? " odd" : ""), x: 0, y, width, height: ROW }));
    svg.append(svgEl("text", { class: "lane-label", x: 6, y: y + ROW / 2 + 4, "data-branch": id }, clip(id, 18)));
  });
  // The axis: time since the first event.
  const axisY = TOP + rows.length * ROW;
  svg.append(svgEl("line", { class: "axis", x1: LABEL + PAD, x2: LABEL + PAD + W, y1: axisY, y2: axisY }));
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(svgEl("text", { class: "tick", x: x(t), y: axisY + 16, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
                     i === 0 ? "0" : "+" + fmtMs(t - t0)));
  }
  for (const m of marks) {
    const isDecision = m === decision;
    const g = svgEl("g", { class: "log-mark" + (isDecision ? " decision" : ""), "data-to": m.to,
                           "data-decision": isDecision ? "true" : "false" });
    g.append(svgEl("title", {}, (m.from ? m.from + " \u2192 " : "") + m.to + (m.reason ? ": " + m.reason : "")));
    g.append(svgEl("line", { x1: x(m.at), x2: x(m.at), y1: TOP - 6, y2: axisY }));
    if (isDecision || m.to === "committed" || m.to === "aborted") {
      g.append(svgEl("text", { x: x(m.at), y: TOP - 10, "text-anchor": m.at - t0 > (t1 - t0) * 0.8 ? "end" : "middle" }, m.to));
    }
    svg.append(g);
  }
  for (const b of bars) {
    const y = TOP + rowOf.get(b.branch) * ROW + 14;
    const left = x(b.start);
    const g = svgEl("g", { class: "call out-" + b.outcome + (FIRST_PHASE.has(b.op) ? " first" : " second"),
                           "data-branch": b.branch, "data-op": b.op, "data-outcome": b.outcome,
                           "data-attempt": b.attempt });
    g.append(svgEl("title", {}, `${b.branch} ${b.op} #${b.attempt}: ${b.outcome}, ${fmtMs(b.ms)}, ` +
                                new Date(b.start).toISOString()));
    g.append(svgEl("rect", { x: left, y, width: Math.max(4, x(b.end) - left), height: ROW - 18, rx: 2 }));
    svg.append(g);
  }
  // Each op's name once, above its first bar, with how many calls it took; a label that would
  // run into the one before it in its row moves right.
  const groups = new Map();
  for (const b of bars) {
    const k = b.branch + "/" + b.op;
    const g = groups.get(k) || { n: 0, first: b };
    g.n++;
    if (b.start < g.first.start) g.first = b;
    groups.set(k, g);
  }
  const labelEnd = new Map();  // row -> where its last label ends
  for (const g of [...groups.values()].sort((p, q) => p.first.start - q.first.start)) {
    const text = g.first.op + (g.n > 1 ? " ×" + g.n : "");
    const r = rowOf.get(g.first.branch);
    const at = Math.max(x(g.first.start), (labelEnd.get(r) || 0) + 6);
    labelEnd.set(r, at + text.length * 5.5);
    svg.append(svgEl("text", { class: "call-label", x: at, y: TOP + r * ROW + 11 }, text));
  }
  return { svg, calls: bars.length };
}

// ---------------------------------------------------------------------------------------------
// Traffic: the last minutes, second by second, as GET /v1/stats/traffic gives them. Stacked bars
// of transactions finished per second (committed below, aborted above) and the p99 of branch
// calls as a line on its own scale.

// The window starts at the first second with any traffic (a treatyd that started a minute ago has
// no five minutes to show), and spans at least a minute.
function drawTraffic(all) {
  const active = all.committed.findIndex((c, i) => c + all.aborted[i] + all.calls[i] > 0);
  const from = Math.max(0, Math.min(active < 0 ? all.seconds : active, all.seconds - 60));
  const t = {};
  for (const k of ["committed", "aborted", "calls", "call_p99_ms"]) t[k] = all[k].slice(from);
  const n = all.seconds - from, H = 44, TOP = 4, width = 600, height = H + TOP;
  const BAR = width / n;
  const tps = t.committed.map((c, i) => c + t.aborted[i]);
  const maxTps = Math.max(1, ...tps);
  const p99s = t.call_p99_ms.filter((v) => v !== null);
  const maxP99 = Math.max(1, ...p99s);
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const svg = svgEl("svg", { class: "traffic", width, height, viewBox: `0 0 ${width} ${height}`,
                             role: "img", "aria-label": "transactions per second and call p99, last minutes",
                             "data-committed": sum(t.committed), "data-aborted": sum(t.aborted),
                             "data-calls": sum(t.calls), "data-p99-max": p99s.length ? Math.max(...p99s) : "" });
  svg.append(svgEl("rect", { class: "traffic-bg", x: 0, y: 0, width, height }));
  const y = (v) => TOP + H - (v / maxTps) * H;
  for (let i = 0; i < n; i++) {
    const c = t.committed[i], a = t.aborted[i];
    if (c) svg.append(svgEl("rect", { class: "tps committed", x: i * BAR, y: y(c), width: BAR, height: H + TOP - y(c),
                                      "data-second": i, "data-count": c }));
    if (a) svg.append(svgEl("rect", { class: "tps aborted", x: i * BAR, y: y(c + a), width: BAR, height: y(c) - y(c + a),
                                      "data-second": i, "data-count": a }));
  }
  const points = [];
  t.call_p99_ms.forEach((v, i) => {
    if (v !== null) points.push(`${i * BAR + BAR / 2},${TOP + H - (v / maxP99) * (H - 2)}`);
  });
  if (points.length) {
    svg.append(svgEl("polyline", { class: "p99", points: points.join(" "), "data-points": points.length }));
  }
  // The latest second is still being counted: the last complete one is the one before it.
  const last = n - 2;
  const text = `${(t.committed[last] || 0)} committed/s \u00b7 ${(t.aborted[last] || 0)} aborted/s \u00b7 ` +
               `p99 of calls ${t.call_p99_ms[last] === null || t.call_p99_ms[last] === undefined ? "\u2013" : fmtMs(t.call_p99_ms[last])}` +
               ` \u00b7 peak ${maxTps} tx/s, p99 ${p99s.length ? fmtMs(Math.max(...p99s)) : "\u2013"} ` +
               `(last ${n < 120 ? n + " s" : Math.round(n / 60) + " min"})`;
  return { svg, text };
}
