"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// Escaped, with a line-break opportunity after each - and _ (ids and names are long).
const brk = (v) => esc(v).replace(/[-_]/g, "$&<wbr>");

// Every time is shown in UTC and says so. A time without a zone is UTC (Dapr's own are).
function instant(v) {
  if (!v) return null;
  const text = String(v);
  const d = new Date(/(Z|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`);
  return Number.isNaN(d.getTime()) ? null : d;
}
function when(v) {
  const d = instant(v);
  if (!d) return esc(v);
  const [day, time] = d.toISOString().slice(0, 19).split("T");
  return `<span class="nowrap">${day}</span> <span class="nowrap">${time} UTC</span>`;
}

// What an operator may do to an instance in each status (the API refuses the rest with 409).
const ACTIONS = {
  RUNNING: ["suspend", "terminate"],
  SUSPENDED: ["resume", "terminate"],
  PENDING: ["terminate"],
  STALLED: ["terminate"],
  COMPLETED: ["purge"],
  FAILED: ["purge"],
  TERMINATED: ["purge"],
};
const TERMINATE_NOTE = "Terminate is for stuck workflows: it stops this instance for good, runs " +
  "no compensation and decides nothing (its output records who terminated it and why).";
const CANCEL_NOTE = "Cancel is how to stop an order: its workflow closes the open approval, " +
  "tells the customer and ends cancelled. Terminate only what cannot take the cancellation.";
// An order's workflow also takes a cancellation (POST /orders/{id}/cancel) while it runs.
const ORDER_PREFIX = "order-";
function actionsOf(wf) {
  const actions = ACTIONS[wf.status] ?? [];
  const cancellable = wf.name === "order_workflow" && ["RUNNING", "SUSPENDED"].includes(wf.status);
  return cancellable ? ["cancel", ...actions] : actions;
}

// The trace UI (GET /overview says where), and the trace each listed instance was started in.
let traces = null;
let appId = "";
const traceOf = {};
// Where an instance's trace is: its own trace when the index knows it, else a search for the
// spans of its activities (the workflow SDK tags each with the instance id).
function traceLink(id) {
  if (!traces) return "";
  const url = traceOf[id] ? `${traces}/trace/${encodeURIComponent(traceOf[id])}`
    : `${traces}/search?service=${encodeURIComponent(appId)}&tags=${encodeURIComponent(
      JSON.stringify({"dapr.ext.workflow._durabletask.task.instance_id": id}))}`;
  return `<a class="trace" href="${esc(url)}" target="_blank" rel="noopener noreferrer">trace</a>`;
}
// A figure that opens the list behind it.
const goto = (text, attrs) => `<a href="#" class="goto" ${Object.entries(attrs).map(([k, v]) =>
  `data-${k}="${esc(v)}"`).join(" ")}>${esc(text)}</a>`;

async function loadOverview() {
  const o = await api("GET", "/overview");
  traces = o.traces_url;
  appId = o.app;
  $("traces").innerHTML = traces ? `Traces: <a href="${esc(traces)}" target="_blank"
    rel="noopener noreferrer">${esc(traces)}</a>` : "Tracing is off (no TRACES_URL).";
  const statuses = Object.entries(o.workflows);
  $("by-status").innerHTML = statuses.length ? statuses.map(([s, n]) => `<tr>
    <td><span class="badge ${esc(s)}">${esc(s)}</span></td>
    <td>${goto(n, {view: "workflows", status: s})}</td></tr>`).join("")
    : "<tr><td>no instances</td></tr>";
  $("approvals-card").classList.toggle("hidden", !o.approvals);
  $("by-tier").innerHTML = Object.entries(o.approvals ?? {}).map(([tier, c]) => `<tr>
    <td>${esc(tier)}</td><td>${goto(c.pending, {view: "inbox"})}</td>
    <td class="${c.overdue ? "late" : ""}">${goto(c.overdue, {view: "inbox"})}</td></tr>`).join("");
  const topics = Object.entries(o.dead_letters);
  $("by-topic").innerHTML = topics.length ? topics.map(([t, n]) => `<tr><td>${esc(t)}</td>
    <td>${goto(n, {view: "deadletters", topic: t})}</td></tr>`).join("")
    : "<tr><td>none</td></tr>";
  o.recent_failures.forEach((f) => { if (f.trace_id) traceOf[f.instance_id] = f.trace_id; });
  $("failures").innerHTML = o.recent_failures.length ? o.recent_failures.map((f) => `<tr>
    <td>${goto(f.instance_id, {view: "workflows", instance: f.instance_id})}</td>
    <td>${when(f.updated_at)}</td><td>${traceLink(f.instance_id)}</td></tr>`).join("")
    : "<tr><td>none</td></tr>";
  document.querySelectorAll("a.goto").forEach((a) => a.onclick = (event) => {
    event.preventDefault();
    if (a.dataset.status !== undefined) $("status").value = a.dataset.status;
    deadTopic = a.dataset.topic ?? "";
    view(a.dataset.view);
    if (a.dataset.instance) show(a.dataset.instance).catch((err) => say(err.message, true));
  });
}

let deadTopic = "";
async function loadDeadLetters() {
  const rows = await api("GET", "/deadletters" + (deadTopic ?
    `?topic=${encodeURIComponent(deadTopic)}` : ""));
  $("deadletters-total").textContent = `${rows.length} dead letters` +
    (deadTopic ? ` on ${deadTopic}` : "");
  $("deadletter-rows").innerHTML = rows.reverse().map((d) => `<tr><td>${esc(d.topic)}</td>
    <td>${brk(d.event_id)}</td><td>${esc(d.reason)}</td><td>${when(d.received_at)}</td></tr>`)
    .join("");
}

function token() { return sessionStorage.getItem("token") || ""; }
function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}
async function api(method, path, body) {
  const resp = await fetch(path, {
    method, headers: {"Authorization": `Bearer ${token()}`,
                      ...(body !== undefined ? {"Content-Type": "application/json"} : {})},
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const data = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
  if (!resp.ok) throw new Error(`${resp.status}: ${data?.detail ?? resp.statusText}`);
  return data;
}

// A reason from a prompt: null when the person cancelled (nothing is sent then).
function askReason(question, required) {
  let ask = question;
  for (;;) {
    const reason = prompt(ask);
    if (reason === null) return null;
    if (reason.trim() || !required) return reason.trim();
    ask = `A reason is required. ${question}`;
  }
}

async function loadWorkflows() {
  // "stuck": the live instances that are stuck, each with why, in place of its update time.
  const status = $("status").value, stuck = status === "stuck";
  const filter = stuck ? "&stuck=true" : (status ? `&status=${status}` : "");
  const data = await api("GET", "/workflows?limit=200" + filter);
  $("total").textContent = `${data.total} ${stuck ? "stuck " : ""}instances`;
  $("last-head").textContent = stuck ? "Why stuck" : "Updated";
  data.instances.forEach((i) => { if (i.trace_id) traceOf[i.instance_id] = i.trace_id; });
  $("rows").innerHTML = data.instances.map((i) => `<tr class="row" data-id="${esc(i.instance_id)}">
    <td>${brk(i.instance_id)}</td><td>${brk(i.name)}</td>
    <td><span class="badge ${esc(i.status)}">${esc(i.status)}</span></td>
    <td>${when(i.created_at)}</td>
    <td class="${stuck ? "why-stuck" : ""}">${stuck ? esc(i.stuck.join("; ")) : when(i.updated_at)}</td>
    </tr>`).join("");
  loadRetention().catch((err) => { $("retention").textContent = `Retention: ${err.message}`; });
  document.querySelectorAll("tr.row").forEach((r) => r.onclick = () =>
    show(r.dataset.id).catch((err) => say(err.message, true)));
}

// The scheduled purge of finished instances: when it runs and what the last run did.
async function loadRetention() {
  const r = await api("GET", "/retention");
  if (!r.enabled) { $("retention").textContent = "Retention: off."; return; }
  const next = r.next_run ? `next ${when(r.next_run)}` : `every ${esc(r.every)}`;
  const last = r.last_run ? `last ${when(r.last_run.at)}: ${esc(r.last_run.status)}, ${
    esc(Object.entries(r.last_run.counts).map(([k, n]) => `${n} ${k}`).join(", ") || "nothing to do")}`
    : "no run yet";
  $("retention").innerHTML = `Retention: finished instances older than ${esc(r.age)}${
    r.dry_run ? " (dry run)" : ""} are purged on schedule <code>${esc(r.schedule)}</code>; ${next}; ${last}.`;
}

function showDetail(visible) {
  $("detail").classList.toggle("hidden", !visible);
  document.querySelector("main").classList.toggle("split", visible);
}

async function show(id) {
  const [wf, history] = await Promise.all([
    api("GET", `/workflows/${encodeURIComponent(id)}?payloads=true`),
    api("GET", `/workflows/${encodeURIComponent(id)}/history`)]);
  const actions = actionsOf(wf);
  $("detail").innerHTML = `<h3>${brk(wf.instance_id)}
      <span class="badge ${esc(wf.status)}">${esc(wf.status)}</span></h3>
    <p>${esc(wf.name)} · created ${when(wf.created_at)} · updated ${when(wf.updated_at)}
      ${traceLink(wf.instance_id)}</p>
    <p><b>Status:</b> ${esc(JSON.stringify(wf.custom_status))}</p>
    ${wf.failure ? `<p class="error"><b>Failure:</b> ${esc(wf.failure)}</p>` : ""}
    <div class="actions">${actions.map((a) => `<button data-act="${a}">${
      a[0].toUpperCase() + a.slice(1)}</button>`).join("")}</div>
    <div class="diagnose"><button id="diagnose">Why is it stuck?</button></div>
    <div id="diagnosis"></div>
    ${actions.includes("cancel") ? `<p class="note">${esc(CANCEL_NOTE)}</p>` : ""}
    ${actions.includes("terminate") ? `<p class="note">${esc(TERMINATE_NOTE)}</p>` : ""}
    <h4>Output</h4><pre>${esc(JSON.stringify(wf.output, null, 2))}</pre>
    <h4>History</h4><table class="history"><tbody>${history.map((e) => `<tr>
      <td>${esc(e.seq)}</td><td>${when(e.timestamp)}</td><td>${brk(e.type)}</td>
      <td>${brk(e.name)}</td></tr>`).join("")}</tbody></table>
    <h4>Input</h4><pre>${esc(JSON.stringify(wf.input, null, 2))}</pre>`;
  document.querySelectorAll("[data-act]").forEach((b) => b.onclick = () => act(id, b.dataset.act));
  $("diagnose").onclick = () => diagnose(id).catch((err) => say(err.message, true));
  showDetail(true);
}

// The diagnosis panel: the findings (the likeliest reason first), then the facts behind them.
async function diagnose(id) {
  const d = await api("GET", `/workflows/${encodeURIComponent(id)}/diagnosis`);
  const items = (xs) => xs.length ? `<ul>${xs.map((x) => `<li>${x}</li>`).join("")}</ul>` : "<p>none</p>";
  const timers = d.waiting_for.timers.map((t) =>
    `${esc(t.kind)} due ${when(t.fire_at)}${t.overdue ? ' <span class="badge overdue">overdue</span>' : ""}`);
  const stranded = d.unconsumed_events.map((e) => `${brk(e.name)} at ${when(e.at)}${
    e.resembles ? ` (meant <b>${brk(e.resembles)}</b>?)` : ""}`);
  const failures = d.activities.failures.map((f) =>
    `${brk(f.name)}, attempt ${esc(f.attempt)} at ${when(f.at)}: ${esc(f.failure)}`);
  const letters = d.dead_letters.map((l) => `${brk(l.topic)} ${brk(l.event_id)}: ${esc(l.reason)}`);
  $("diagnosis").innerHTML = `<div class="diagnosis"><h4>Why is it stuck?</h4>
    ${items(d.findings.map(esc))}
    <p><b>Waits for events:</b> ${esc(d.waiting_for.events.join(", ") || "none")}</p>
    <p><b>Timers:</b></p>${items(timers)}
    <p><b>Events no wait took:</b></p>${items(stranded)}
    <p><b>Activity failures:</b></p>${items(failures)}
    <p><b>Dead letters of its order:</b></p>${items(letters)}
    <p><b>Sidecar:</b> ${esc(d.runtime.sidecar)} · <b>workflow workers:</b>
      ${esc(d.runtime.workflow_workers)}</p>
    <p><b>Last progress:</b> ${when(d.last_progress_at)}${
      d.deadline ? ` · <b>deadline:</b> ${when(d.deadline)}` : ""}</p></div>`;
}

async function act(id, action) {
  let body;
  if (action === "purge") {
    if (!confirm(`Purge ${id}? Its state and history are deleted for good.`)) return;
  } else {
    const note = id.startsWith(ORDER_PREFIX) ? `${TERMINATE_NOTE}\n${CANCEL_NOTE}` : TERMINATE_NOTE;
    if (action === "terminate" && !confirm(`${note}\n\nTerminate ${id}?`)) return;
    const reason = askReason(`Reason to ${action} ${id}? (audited)`, true);
    if (reason === null) { say(`${id}: ${action} called off, nothing sent`); return; }
    body = {reason};
  }
  try {
    if (action === "purge") await api("DELETE", `/workflows/${encodeURIComponent(id)}`);
    else if (action === "cancel") {
      const order = id.slice(ORDER_PREFIX.length);
      const path = `/orders/${encodeURIComponent(order)}`;
      const out = await api("POST", `${path}/cancel`, body);
      say(`order ${order}: cancellation requested; ${out.detail}`);
      const now = await api("GET", `${path}?wait=20&until=cancelled`);
      say(`order ${order}: ${now.status}${now.status === "cancelled" ? "" : ` (${now.detail})`}`);
      await loadWorkflows();
      return await show(id);
    }
    else await api("POST", `/workflows/${encodeURIComponent(id)}/${action}`, body);
    say(`${id}: ${action} done`);
    await loadWorkflows();
    if (action !== "purge") await show(id);
    else { $("detail").innerHTML = ""; showDetail(false); }
  } catch (err) { say(err.message, true); }
}

async function loadInbox() {
  const rows = await api("GET", "/approvals?status=pending");
  const now = Date.now();
  $("inbox-rows").innerHTML = rows.map((r) => {
    const overdue = instant(r.due_at) !== null && instant(r.due_at).getTime() < now;
    const decide = r.can_decide
      ? `<button data-order="${esc(r.order_id)}" data-ok="1">Approve</button>
         <button data-order="${esc(r.order_id)}" data-ok="">Reject</button>`
      : `<span class="why-not">${esc(r.why_not)}</span>`;
    return `<tr class="${r.can_decide ? "mine" : "not-mine"}" data-approval="${esc(r.order_id)}">
      <td>${brk(r.order_id)}</td><td>${esc(r.tier)}</td><td>${esc(r.amount_text)}</td>
      <td>${when(r.due_at)}${overdue ? ' <span class="badge overdue">overdue</span>' : ""}</td>
      <td>${decide}</td></tr>`;
  }).join("");
  const mine = rows.filter((r) => r.can_decide).length;
  $("inbox-total").textContent = `${rows.length} pending, ${mine} for you to decide`;
  document.querySelectorAll("[data-order]").forEach((b) => b.onclick = () =>
    decide(b.dataset.order, Boolean(b.dataset.ok)));
}

async function decide(order, approved) {
  const verb = approved ? "approve" : "reject";
  const reason = askReason(`Reason to ${verb} order ${order}? (optional)`, false);
  if (reason === null) { say(`order ${order}: ${verb} cancelled, nothing sent`); return; }
  try {
    const out = await api("POST", `/approvals/${encodeURIComponent(order)}/decisions`,
                          {approved, reason});
    say(`order ${order}: ${verb} submitted as ${out.decision_id}`);
    setTimeout(() => loadInbox().catch((err) => say(err.message, true)), 800);
  } catch (err) { say(err.message, true); }
}

async function loadAudit() {
  const rows = await api("GET", "/audit?limit=100");
  $("audit-rows").innerHTML = rows.reverse().map((r) => `<tr><td>${esc(r.seq)}</td>
    <td>${when(r.at)}</td><td>${esc(r.actor)}</td><td>${esc(r.action)}</td>
    <td>${brk(r.target)}</td><td>${esc(r.outcome)}</td></tr>`).join("");
}

function view(name) {
  for (const id of ["overview", "workflows", "inbox", "deadletters", "audit"]) {
    $(id).classList.toggle("hidden", id !== name);
  }
  // The instance panel belongs to the workflows view, and only once one is chosen.
  showDetail(name === "workflows" && $("detail").innerHTML.trim() !== "");
  document.querySelectorAll("nav button").forEach((b) =>
    b.classList.toggle("on", b.dataset.view === name));
  const load = {overview: loadOverview, workflows: loadWorkflows, inbox: loadInbox,
                deadletters: loadDeadLetters, audit: loadAudit}[name];
  load().catch((err) => say(err.message, true));
}

async function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    // Keep the token in this tab's session storage only: not in the address bar, the history
    // or a bookmark. The rest of the fragment (view, instance) stays.
    if (params.get("token")) sessionStorage.setItem("token", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  $("token").value = token();
  $("token").onchange = () => { sessionStorage.setItem("token", $("token").value); view("overview"); };
  document.querySelectorAll("nav button").forEach((b) => b.onclick = () => view(b.dataset.view));
  $("refresh").onclick = () => loadWorkflows().catch((err) => say(err.message, true));
  $("status").onchange = $("refresh").onclick;
  $("inbox-refresh").onclick = () => loadInbox().catch((err) => say(err.message, true));
  $("overview-refresh").onclick = () => loadOverview().catch((err) => say(err.message, true));
  $("deadletters-refresh").onclick = () => loadDeadLetters().catch((err) => say(err.message, true));
  $("verify").onclick = async () => {
    try { $("verdict").textContent = (await api("GET", "/audit/verify")).summary; }
    catch (err) { say(err.message, true); }
  };
  try {
    $("title").textContent = `Control room · ${(await (await fetch("/openapi.json")).json()).info.title}`;
    if ((await fetch("/approvals", {headers: {"Authorization": `Bearer ${token()}`}})).status !== 404)
      $("inbox-tab").classList.remove("hidden");
  } catch (err) { /* the page still works without its title */ }
  if (!token()) { say("Enter a bearer token to start."); return; }
  const instance = params.get("instance");
  // The trace UI's address, for an instance's trace link, even when the page opens elsewhere.
  if (params.get("view") || instance) await loadOverview().catch(() => {});
  view(params.get("view") || (instance ? "workflows" : "overview"));
  if (instance) show(instance).catch((err) => say(err.message, true));
}
start();
