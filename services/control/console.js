"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const when = (v) => (v ? String(v).replace("T", " ").slice(0, 19) : "");

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

async function loadWorkflows() {
  const status = $("status").value;
  const data = await api("GET", "/workflows?limit=200" + (status ? `&status=${status}` : ""));
  $("total").textContent = `${data.total} instances`;
  $("rows").innerHTML = data.instances.map((i) => `<tr class="row" data-id="${esc(i.instance_id)}">
    <td>${esc(i.instance_id)}</td><td>${esc(i.name)}</td>
    <td><span class="badge ${esc(i.status)}">${esc(i.status)}</span></td>
    <td>${when(i.created_at)}</td><td>${when(i.updated_at)}</td></tr>`).join("");
  document.querySelectorAll("tr.row").forEach((r) => r.onclick = () => show(r.dataset.id));
}

async function show(id) {
  const [wf, history] = await Promise.all([
    api("GET", `/workflows/${encodeURIComponent(id)}?payloads=true`),
    api("GET", `/workflows/${encodeURIComponent(id)}/history`)]);
  $("detail").innerHTML = `<h3>${esc(wf.instance_id)}
      <span class="badge ${esc(wf.status)}">${esc(wf.status)}</span></h3>
    <p>${esc(wf.name)} · created ${when(wf.created_at)} · updated ${when(wf.updated_at)}</p>
    <p><b>Status:</b> ${esc(JSON.stringify(wf.custom_status))}</p>
    ${wf.failure ? `<p class="error"><b>Failure:</b> ${esc(wf.failure)}</p>` : ""}
    <div class="actions">
      <button data-act="suspend">Suspend</button><button data-act="resume">Resume</button>
      <button data-act="terminate">Terminate</button><button data-act="purge">Purge</button>
    </div>
    <h4>Output</h4><pre>${esc(JSON.stringify(wf.output, null, 2))}</pre>
    <h4>History</h4><table><tbody>${history.map((e) => `<tr><td>${when(e.timestamp)}</td>
      <td>${esc(e.type)}</td><td>${esc(e.name)}</td></tr>`).join("")}</tbody></table>
    <h4>Input</h4><pre>${esc(JSON.stringify(wf.input, null, 2))}</pre>`;
  document.querySelectorAll("[data-act]").forEach((b) => b.onclick = () => act(id, b.dataset.act));
}

async function act(id, action) {
  const reason = prompt(`Reason to ${action} ${id}?`);
  if (reason === null) return;
  try {
    if (action === "purge") await api("DELETE", `/workflows/${encodeURIComponent(id)}`);
    else await api("POST", `/workflows/${encodeURIComponent(id)}/${action}`, {reason});
    say(`${id}: ${action} done`);
    await loadWorkflows();
    if (action !== "purge") await show(id); else $("detail").innerHTML = "";
  } catch (err) { say(err.message, true); }
}

async function loadInbox() {
  const rows = await api("GET", "/approvals?status=pending");
  $("inbox-rows").innerHTML = rows.map((r) => `<tr><td>${esc(r.order_id)}</td>
    <td>${esc(r.tier)}</td><td>${esc(r.amount_text)}</td><td>${when(r.due_at)}</td>
    <td><button data-order="${esc(r.order_id)}" data-ok="1">Approve</button>
        <button data-order="${esc(r.order_id)}" data-ok="">Reject</button></td></tr>`).join("");
  document.querySelectorAll("[data-order]").forEach((b) => b.onclick = async () => {
    const reason = prompt("Reason?") ?? "";
    try {
      const out = await api("POST", `/approvals/${encodeURIComponent(b.dataset.order)}/decisions`,
                            {approved: Boolean(b.dataset.ok), reason});
      say(`decision ${out.decision_id} submitted`);
      setTimeout(loadInbox, 800);
    } catch (err) { say(err.message, true); }
  });
}

async function loadAudit() {
  const rows = await api("GET", "/audit?limit=100");
  $("audit-rows").innerHTML = rows.reverse().map((r) => `<tr><td>${r.seq}</td>
    <td>${when(r.at)}</td><td>${esc(r.actor)}</td><td>${esc(r.action)}</td>
    <td>${esc(r.target)}</td><td>${esc(r.outcome)}</td></tr>`).join("");
}

function view(name) {
  for (const id of ["workflows", "inbox", "audit"]) $(id).classList.toggle("hidden", id !== name);
  document.querySelectorAll("nav button").forEach((b) =>
    b.classList.toggle("on", b.dataset.view === name));
  const load = {workflows: loadWorkflows, inbox: loadInbox, audit: loadAudit}[name];
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
  $("token").onchange = () => { sessionStorage.setItem("token", $("token").value); view("workflows"); };
  document.querySelectorAll("nav button").forEach((b) => b.onclick = () => view(b.dataset.view));
  $("refresh").onclick = () => loadWorkflows().catch((err) => say(err.message, true));
  $("status").onchange = $("refresh").onclick;
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
  view(params.get("view") || "workflows");
  if (params.get("instance")) show(params.get("instance")).catch((err) => say(err.message, true));
}
start();
