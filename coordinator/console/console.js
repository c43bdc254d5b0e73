// Treaty console: reads treatyd's REST API (same origin) and renders it. No dependencies.
// Every value from the API goes through textContent, never innerHTML: gids, reasons and
// participants' error texts are untrusted.
"use strict";

const UNDECIDED = new Set(["active", "prepared"]);
const FINAL = new Set(["committed", "aborted"]);
const byId = (id) => document.getElementById(id);
let selectedGid = null;

function token() { return sessionStorage.getItem("treaty-token") || ""; }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? data.error.message : resp.status + " " + resp.statusText;
    const err = new Error(resp.status === 401 || resp.status === 403 ? msg + " (set a token above)" : msg);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function shortTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function isStuck(tx, now) {
  return !FINAL.has(tx.status) && (Boolean(tx.attention) || new Date(tx.deadline) < now);
}

async function loadCounts() {
  const box = byId("counts");
  try {
    const stats = await api("GET", "/v1/stats");
    box.replaceChildren();
    for (const [status, n] of Object.entries(stats.by_status)) {
      const chip = el("span", status + " " + n, "count");
      chip.dataset.status = status;
      box.append(chip);
    }
  } catch (e) {
    box.replaceChildren(el("span", "counts unavailable: " + e.message, "error"));
  }
}

function listQuery() {
  const q = new URLSearchParams({ limit: "200" });
  if (byId("f-status").value) q.set("status", byId("f-status").value);
  if (byId("f-mode").value) q.set("mode", byId("f-mode").value);
  const age = byId("f-age").value;
  if (age) { const [k, v] = age.split("="); q.set(k, v); }
  return q;
}

async function loadList() {
  const note = byId("list-note");
  const body = document.querySelector("#transactions tbody");
  try {
    const q = listQuery();
    const stuckQ = new URLSearchParams(q); stuckQ.set("stuck", "true");
    const [stuck, all] = await Promise.all([
      api("GET", "/v1/transactions?" + stuckQ),
      byId("f-stuck").checked ? Promise.resolve({ transactions: [] }) : api("GET", "/v1/transactions?" + q),
    ]);
    const now = new Date();
    const seen = new Set();
    const rows = [];
    for (const tx of stuck.transactions.concat(all.transactions)) {
      if (seen.has(tx.gid)) continue;
      seen.add(tx.gid);
      rows.push(tx);
    }
    // Stuck first, then newest first.
    rows.sort((a, b) => (isStuck(b, now) - isStuck(a, now)) || (b.created_at < a.created_at ? -1 : b.created_at > a.created_at ? 1 : 0));
    body.replaceChildren();
    for (const tx of rows) {
      const tr = el("tr");
      tr.dataset.gid = tx.gid;
      if (isStuck(tx, now)) tr.classList.add("stuck");
      if (tx.gid === selectedGid) tr.classList.add("selected");
      tr.append(el("td", tx.gid), el("td", tx.mode), el("td", tx.status, "status st-" + tx.status),
                el("td", shortTime(tx.created_at)), el("td", shortTime(tx.updated_at)),
                el("td", tx.attention || (isStuck(tx, now) ? "past its deadline" : tx.reason || "")));
      tr.addEventListener("click", () => select(tx.gid));
      body.append(tr);
    }
    note.textContent = rows.length === 0 ? "No transactions match." :
      rows.length + " shown" + (all.next ? " (more exist: narrow the filters)" : "") + ".";
    note.classList.remove("error");
  } catch (e) {
    note.textContent = "Cannot list transactions: " + e.message;
    note.classList.add("error");
  }
}

function fact(dl, name, value) {
  if (value === undefined || value === null || value === "") return;
  dl.append(el("dt", name), el("dd", value));
}

async function loadDetail() {
  if (!selectedGid) return;
  let tx;
  try {
    tx = await api("GET", "/v1/transactions/" + encodeURIComponent(selectedGid));
  } catch (e) {
    byId("action-result").textContent = "Cannot load " + selectedGid + ": " + e.message;
    return;
  }
  byId("detail").hidden = false;
  byId("detail-gid").textContent = tx.gid;
  const st = byId("detail-status");
  st.textContent = tx.status;
  st.className = "status st-" + tx.status;
  const dl = byId("detail-facts");
  dl.replaceChildren();
  fact(dl, "mode", tx.mode);
  fact(dl, "definition", tx.definition);
  fact(dl, "submitted", tx.submitted ? "yes" : "no (branches still being registered)");
  fact(dl, "created", shortTime(tx.created_at));
  fact(dl, "deadline", shortTime(tx.deadline));
  fact(dl, "reason", tx.reason);
  fact(dl, "attention", tx.attention);
  drawSagaOf(tx);
  const box = byId("timeline-box");
  box.hidden = false;
  const drawn = drawTimeline(tx, byId("tx-timeline").clientWidth);
  box.hidden = drawn.calls === 0;
  byId("tx-timeline").replaceChildren(drawn.svg);
  const branches = document.querySelector("#branches tbody");
  branches.replaceChildren();
  // Each branch's ops in the order they run: first phase, then second, then undo.
  const phase = { prepare: 0, try: 0, action: 0, commit: 1, confirm: 1, publish: 1, abort: 2, cancel: 2, compensate: 2 };
  const first = new Map();
  tx.branches.forEach((b, i) => { if (!first.has(b.id)) first.set(b.id, i); });
  const ops = tx.branches.slice().sort((x, y) =>
    (first.get(x.id) - first.get(y.id)) || ((phase[x.op] ?? 3) - (phase[y.op] ?? 3)));
  for (const b of ops) {
    const tr = el("tr");
    tr.dataset.branch = b.id;
    tr.append(
        el('td', b.id), el('td', b.op), el('td', b.status), el('td', b.attempts),
        el('td', b.url || (b.topic ? 'kafka topic ' + b.topic : '')),
        el('td', b.last_error || (b.output ? 'output ' + JSON.stringify(b.output) : ''),
           b.last_error ? 'error' : ''));
    branches.append(tr);
  }
  const timeline = byId("timeline");
  timeline.replaceChildren();
  for (const entry of tx.log) {
    const li = el("li");
    const time = el("time", shortTime(entry.at));
    time.dateTime = entry.at;
    li.append(time, el("strong", (entry.from ? entry.from + " \u2192 " : "") + entry.to));
    if (entry.reason) li.append(el("span", " " + entry.reason));
    if (entry.actor) li.append(el("em", " (by " + entry.actor + ")"));
    timeline.append(li);
  }
  byId("retry").disabled = FINAL.has(tx.status);
  byId("abort").disabled = !UNDECIDED.has(tx.status);
  byId("abort-confirm-box").hidden = true;
  byId("force").disabled = FINAL.has(tx.status);
  if (FINAL.has(tx.status)) byId("force-box").hidden = true;
}

// The detail's saga graph: one node per step, coloured by its action's and compensation's state.
let pickedStep = null;
function drawSagaOf(tx) {
  const box = byId("saga-graph-box");
  box.hidden = tx.mode !== "saga";
  if (box.hidden) return;
  const steps = sagaStepsOfTransaction(tx);
  const info = byId("saga-graph-info");
  const pick = (s) => { pickedStep = tx.gid + "/" + s.name; info.textContent = s.name + ": " + s.detail.join("; "); };
  byId("saga-graph").replaceChildren(drawSagaGraph(steps, pick));
  const again = steps.find((s) => tx.gid + "/" + s.name === pickedStep);
  if (again) pick(again); else info.textContent = "Click a step for its attempts and last error.";
}

// The Sagas tab: the loaded definitions, and one drawn as its author wrote it.
let shownSaga = null;
async function loadSagas() {
  const note = byId("sagas-note");
  try {
    const list = await api("GET", "/v1/sagas");
    const body = document.querySelector("#saga-list tbody");
    body.replaceChildren();
    for (const d of list.sagas) {
      const tr = el("tr");
      tr.dataset.saga = d.name;
      tr.classList.toggle("selected", d.name === shownSaga);
      tr.append(el("td", d.name), el("td", d.version), el("td", d.steps.join(", ")), el("td", d.file));
      tr.addEventListener("click", () => { shownSaga = d.name; loadSagas(); });
      body.append(tr);
    }
    note.textContent = list.sagas.length === 0 ? "No saga definitions are loaded (treaty.yaml: sagas)." : "";
    note.classList.remove("error");
    if (!shownSaga && list.sagas.length) shownSaga = list.sagas[0].name;
    if (shownSaga) {
      const def = await api("GET", "/v1/sagas/" + encodeURIComponent(shownSaga));
      byId("saga-def").hidden = false;
      byId("saga-def-name").textContent = def.name;
      const older = (def.versions || []).filter((v) => !v.loaded)
          .map((v) => v.version + " (" + v.unfinished + " running)");
      byId("saga-def-version").textContent = "version " + def.version + " \u00b7 " + def.file +
          (older.length ? " \u00b7 older versions still running: " + older.join(", ") : "");
      const info = byId("saga-def-info");
      info.textContent = "Click a step for what it calls.";
      byId("saga-def-graph").replaceChildren(drawSagaGraph(sagaStepsOfDefinition(def),
          (s) => { info.textContent = s.name + ": " + s.detail.join("; "); }));
    }
  } catch (e) {
    note.textContent = "Cannot list sagas: " + e.message;
    note.classList.add("error");
  }
}

let tab = "transactions";
function showTab(name) {
  tab = name;
  byId("tab-transactions").setAttribute("aria-pressed", String(name === "transactions"));
  byId("tab-sagas").setAttribute("aria-pressed", String(name === "sagas"));
  byId("list-section").hidden = name !== "transactions";
  byId("detail").hidden = name !== "transactions" || !selectedGid;
  byId("sagas-section").hidden = name !== "sagas";
  if (name === "sagas") loadSagas();
}

function select(gid) {
  selectedGid = gid;
  byId("action-result").textContent = "";
  for (const tr of document.querySelectorAll("#transactions tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.gid === gid);
  }
  loadDetail();
}

async function act(label, path) {
  const out = byId("action-result");
  out.classList.remove("error");
  out.textContent = label + "\u2026";
  try {
    const r = await api("POST", path, {});
    out.textContent = label + ": " + r.status + (r.reason ? " (" + r.reason + ")" : "");
  } catch (e) {
    out.textContent = label + " refused: " + e.message;
    out.classList.add("error");
  }
  await refresh();
}

async function refresh() {
  if (tab === "sagas") { await Promise.all([loadCounts(), loadSagas()]); return; }
  await Promise.all([loadCounts(), loadList(), loadDetail()]);
}

byId("filters").addEventListener("submit", (e) => { e.preventDefault(); loadList(); });
for (const id of ["f-status", "f-mode", "f-age", "f-stuck"]) byId(id).addEventListener("change", loadList);
byId("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("treaty-token", byId("token").value.trim());
  byId("token").value = "";
  refresh();
});
byId("retry").addEventListener("click", () =>
  act("Retry", "/v1/transactions/" + encodeURIComponent(selectedGid) + "/retry"));
byId("abort").addEventListener("click", () => { byId("abort-confirm-box").hidden = false; });
byId("abort-cancel").addEventListener("click", () => { byId("abort-confirm-box").hidden = true; });
byId("abort-confirm").addEventListener("click", () => {
  byId("abort-confirm-box").hidden = true;
  act("Abort", "/v1/transactions/" + encodeURIComponent(selectedGid) + "/abort");
});

// Force finish: a dry run first shows what will not be called, then the operator confirms.
function forceBody(dryRun) {
  return { status: byId("force-status").value, reason: byId("force-reason").value.trim(), dry_run: dryRun };
}
byId("force").addEventListener("click", () => {
  byId("force-box").hidden = false;
  byId("force-confirm").hidden = true;
  byId("force-preview").textContent = "Say why, then Check: nothing changes until you confirm.";
});
byId("force-cancel").addEventListener("click", () => { byId("force-box").hidden = true; });
for (const id of ["force-status", "force-reason"]) {
  byId(id).addEventListener("input", () => { byId("force-confirm").hidden = true; });
}
byId("force-check").addEventListener("click", async () => {
  const preview = byId("force-preview");
  preview.classList.remove("error");
  try {
    const r = await api("POST", "/v1/transactions/" + encodeURIComponent(selectedGid) + "/force", forceBody(true));
    const calls = r.not_called.map((n) => n.id + " " + n.op + " (" + (n.url || n.topic) + ")");
    preview.textContent = "It ends " + byId("force-status").value + ". " + (calls.length
        ? "These calls will not be made: " + calls.join(", ") + ". Make sure they are done or not needed."
        : "No call is still due.");
    byId("force-confirm").hidden = false;
  } catch (e) {
    preview.textContent = "Refused: " + e.message;
    preview.classList.add("error");
    byId("force-confirm").hidden = true;
  }
});
byId("force-confirm").addEventListener("click", async () => {
  const out = byId("action-result");
  out.classList.remove("error");
  try {
    const r = await api("POST", "/v1/transactions/" + encodeURIComponent(selectedGid) + "/force", forceBody(false));
    out.textContent = "Forced: " + r.status + " (" + r.reason + ")";
  } catch (e) {
    out.textContent = "Force refused: " + e.message;
    out.classList.add("error");
  }
  byId("force-box").hidden = true;
  await refresh();
});

byId("tab-transactions").addEventListener("click", () => { showTab("transactions"); refresh(); });
byId("tab-sagas").addEventListener("click", () => showTab("sagas"));

// The traffic strip: refreshed every two seconds while the page is open.
async function loadTraffic() {
  const note = byId("traffic-note");
  try {
    const drawn = drawTraffic(await api("GET", "/v1/stats/traffic"));
    byId("traffic").replaceChildren(drawn.svg);
    note.textContent = drawn.text;
    note.classList.remove("error");
  } catch (e) {
    note.textContent = "traffic unavailable: " + e.message;
    note.classList.add("error");
  }
}

const params = new URLSearchParams(location.search);
if (params.get("gid")) selectedGid = params.get("gid");
refresh();
setInterval(refresh, 5000);
loadTraffic();
setInterval(loadTraffic, 2000);
