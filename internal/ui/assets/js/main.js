// main.js: the dashboard's state, its refresh schedule and its actions.
//
// Liveness: the event stream (/v1/events) tells the page that something
// changed; the page then refetches the documents that event touches, and
// re-renders. Both are coalesced — one status fetch in flight at a time, at
// most one render every 250 ms — so 200 instances changing every second
// cost a few fetches and four renders a second, not hundreds.
import { get, post, optional, stream, setCSRF, abortAll, HTTPError } from "./api.js";
import { h, setText } from "./dom.js";
import { Services, splitID } from "./services.js";
import { renderSummary, renderAudit, renderChain, renderEvents, renderScorecard } from "./panels.js";
import { Traffic, TTRTrend } from "./charts.js";
import * as auto from "./automation.js";
import { renderDeploys } from "./deploys.js";

const $ = (id) => document.getElementById(id);
const RENDER_GAP = 250; // ms between renders, at most four a second
const MAX_EVENTS = 500;

const state = {
  session: null,
  canOperate: false,
  status: null,
  rates: {}, // service → {rps, errorRate, retried, shed}
  cpu: {}, // instance → cores, from successive status documents
  marks: null, // the previous status document's counters: {t, proxies, cpu}
  history: { services: null, instances: null },
  events: [],
  audit: [],
  chain: null,
  scorecard: null,
  scoreOpen: new Set(),
  remedy: { approvals: null, incidents: null, runbooks: null, conditions: null, paused: null },
  databases: null,
  drills: null,
  fleet: null, // {status, card}: GET /v1/fleet/status and /v1/fleet/scorecard
  deploys: null, // {releases: {service: [release]}, canaries: {service: report}}
  deployOpen: new Set(),
};

// ---- coalesced rendering ----

const dirty = new Set();
let renderTimer = 0;
let lastRender = 0;
const renderers = {};

function invalidate(...names) {
  for (const n of names) dirty.add(n);
  if (renderTimer) return;
  renderTimer = setTimeout(flush, Math.max(0, RENDER_GAP - (performance.now() - lastRender)));
}

function flush() {
  renderTimer = 0;
  lastRender = performance.now();
  const names = [...dirty];
  dirty.clear();
  for (const n of names) {
    try {
      renderers[n]?.();
    } catch (e) {
      console.error("render", n, e); // one broken panel must not stop the others
    }
  }
}

// refresher returns a kick function that runs fetch at most once per gap
// ms, never twice at once; a kick during a run schedules one more run.
function refresher(fetchFn, gap) {
  let inflight = false, again = false, timer = 0, last = -Infinity;
  const run = async () => {
    timer = 0;
    if (!state.session) return; // signed out while waiting
    inflight = true;
    last = performance.now();
    try {
      await fetchFn();
    } catch (e) {
      failed(e);
    } finally {
      inflight = false;
      if (again) {
        again = false;
        kick();
      }
    }
  };
  const kick = () => {
    if (!state.session) return;
    if (inflight) {
      again = true;
      return;
    }
    if (!timer) timer = setTimeout(run, Math.max(0, gap - (performance.now() - last)));
  };
  return kick;
}

function failed(e) {
  if (e.name === "AbortError" || !state.session) return; // cancelled by a sign-out
  if (e instanceof HTTPError && e.status === 401) {
    signedOut("Your session ended. Sign in again.");
    return;
  }
  console.warn(e);
  setLive("down", e.message);
}

// ---- fetches ----

const kickStatus = refresher(async () => {
  const doc = await get("/v1/status");
  derive(doc);
  state.status = doc;
  invalidate("services", "summary", "traffic", "header", "deploys");
  if (!state.deploys) kickDeploys(); // the histories of the services now known
}, 400);

// derive computes rates from the previous status document's counters, over
// at least two seconds so that one slow fetch does not spike them.
function derive(doc) {
  const now = Date.parse(doc.time) || Date.now();
  const m = state.marks;
  const cpuNow = {};
  for (const s of doc.services || []) for (const i of s.instances || []) cpuNow[i.id] = { cpu: i.cpu_seconds || 0, started: i.started_at };
  const prox = Object.fromEntries((doc.proxies || []).map((p) => [p.service, p]));
  if (!m) {
    state.marks = { t: now, proxies: prox, cpu: cpuNow };
    return;
  }
  const dt = (now - m.t) / 1000;
  if (dt < 2) return;
  for (const [name, p] of Object.entries(prox)) {
    const q = m.proxies[name];
    if (!q || p.requests < q.requests) continue;
    const reqs = p.requests - q.requests;
    state.rates[name] = { rps: reqs / dt, errorRate: reqs ? (p.errors - q.errors) / reqs : 0,
      retried: (p.retries - q.retries) / dt, shed: (p.shed - q.shed) / dt };
  }
  const cpu = {};
  for (const [id, c] of Object.entries(cpuNow)) {
    const q = m.cpu[id];
    if (q && q.started === c.started && c.cpu >= q.cpu) cpu[id] = (c.cpu - q.cpu) / dt;
  }
  state.cpu = cpu;
  state.marks = { t: now, proxies: prox, cpu: cpuNow };
}

const kickHistory = refresher(async () => {
  if (!has("/v1/history")) return;
  const [svc, inst] = await Promise.all([
    optional("/v1/history?prefix=service/&range=1h&points=120"),
    optional("/v1/history?prefix=instance/&range=1h&points=40"),
  ]);
  state.history = { services: svc, instances: inst };
  invalidate("services", "traffic");
}, 5000);

const auditFilter = { target: "", actor: "", kind: "", since: "1h" };

const kickAudit = refresher(async () => {
  const q = new URLSearchParams({ limit: "200" });
  for (const [k, v] of Object.entries(auditFilter)) if (v) q.set(k, v);
  const doc = await get("/v1/audit?" + q);
  state.audit = doc.records || [];
  invalidate("audit");
}, 1500);

const kickChain = refresher(async () => {
  state.chain = await get("/v1/audit/verify");
  invalidate("chain", "summary");
}, 5000);

const kickScore = refresher(async () => {
  if (!has("/v1/scorecard")) return;
  state.scorecard = await optional("/v1/scorecard");
  invalidate("scorecard", "summary");
}, 5000);

// The remediation engine, the database manager and the drills: each panel
// shows when the agent serves its endpoint (the session lists them).
const has = (path) => !!(state.session && (state.session.endpoints || []).includes(path));

const kickRemedy = refresher(async () => {
  const r = state.remedy;
  const load = async (path, set) => {
    if (has(path)) set(await optional(path));
  };
  await Promise.all([
    load("/v1/approvals", (d) => (r.approvals = d && auto.listOf(d, "approvals", "pending"))),
    load("/v1/incidents", (d) => (r.incidents = d && auto.listOf(d, "incidents"))),
    load("/v1/runbooks", (d) => {
      r.runbooks = d && auto.listOf(d, "runbooks");
      if (d && typeof d.paused === "boolean") r.paused = d.paused;
      if (d && typeof d.dry_run === "boolean") r.dryRun = d.dry_run;
    }),
    load("/v1/conditions", (d) => (r.conditions = d && auto.listOf(d, "alerts", "conditions"))),
  ]);
  invalidate("automation", "summary");
}, 1000);

const kickDB = refresher(async () => {
  if (!has("/v1/db/status")) return;
  state.databases = await optional("/v1/db/status");
  invalidate("databases");
}, 2000);

const kickFleet = refresher(async () => {
  if (!has("/v1/fleet/status")) return;
  const [status, card] = await Promise.all([optional("/v1/fleet/status"), has("/v1/fleet/scorecard") ? optional("/v1/fleet/scorecard") : null]);
  state.fleet = status && { status, card };
  invalidate("fleet");
}, 2000);

const kickDrills = refresher(async () => {
  if (!has("/v1/drills")) return;
  const d = await optional("/v1/drills");
  state.drills = d && auto.listOf(d, "drills", "runs");
  invalidate("drills");
}, 2000);

// The deploys panel: each service's release history and the canaries, the
// documents of `medic releases` and `medic deploy status`.
const kickDeploys = refresher(async () => {
  if (!has("/v1/services/{name}/releases") && !has("/v1/canaries")) return;
  if (!state.status) return; // the status fetch kicks again: the services are not known yet
  const names = ((state.status && state.status.services) || []).map((s) => s.name);
  const releases = {};
  const [canaries] = await Promise.all([
    has("/v1/canaries") ? optional("/v1/canaries") : null,
    ...(has("/v1/services/{name}/releases") ? names.map(async (n) => {
      releases[n] = await optional(`/v1/services/${encodeURIComponent(n)}/releases`);
    }) : []),
  ]);
  const byService = {};
  for (const c of (canaries && canaries.canaries) || []) byService[c.service] = c;
  state.deploys = { releases, canaries: byService };
  invalidate("deploys");
}, 1000);

// ---- the event stream ----

let stopStream = null;

function onEvent(ev) {
  state.events.push(ev);
  if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
  invalidate("events");
  const k = ev.kind || "";
  if (k.startsWith("instance.") || k.startsWith("probe.") || k.startsWith("service.") || k.startsWith("config.")) kickStatus();
  if (/^(remedy|runbook|incident|approval|condition|decision|action|automation|trust)\b/.test(k)) kickRemedy();
  if (k.startsWith("db.")) kickDB();
  if (k.startsWith("fleet.")) kickFleet();
  if (k.startsWith("drill.")) kickDrills();
  if (k.startsWith("deploy.") || k.startsWith("release.") || k.startsWith("config.") || k.startsWith("service.rollout")) {
    kickDeploys();
    kickStatus(); // a deploy's groups and weights are in the proxies' figures
  }
  kickAudit(); // every event is an audit record too
  kickChain();
}

function setLive(s, detail) {
  const el = $("live");
  el.dataset.state = s;
  setText(el, s === "live" ? "live" : s === "connecting" ? "connecting…" : `disconnected${detail ? ": " + detail : ""}`);
}

// ---- actions ----

const dialog = $("confirm");

// confirm asks before an action; resolves to {reason} or null when cancelled.
function confirm(title, text, { reason = true, danger = true, ok = "Confirm" } = {}) {
  setText($("confirm-title"), title);
  setText($("confirm-text"), text);
  $("confirm-reason-label").hidden = !reason;
  $("confirm-reason").value = "";
  setText($("confirm-ok"), ok);
  $("confirm-ok").className = danger ? "danger" : "primary";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? { reason: $("confirm-reason").value.trim() } : null), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    (reason ? $("confirm-reason") : $("confirm-ok")).focus();
  });
}

function toast(text, bad) {
  const el = h("div", { class: bad ? "bad" : null }, text);
  $("toast").append(el);
  setTimeout(() => el.remove(), bad ? 9000 : 4000);
}

async function act(label, path, body) {
  try {
    await post(path, body);
    toast(`${label}: done`);
  } catch (e) {
    if (e instanceof HTTPError && e.status === 401) return failed(e);
    toast(`${label}: ${e.message}`, true);
  } finally {
    kickStatus();
    kickAudit();
    kickRemedy();
  }
}

const actions = {
  async instance(id, action) {
    const [svc, idx] = splitID(id);
    const verbs = { restart: "Restart", stop: "Stop", start: "Start" };
    const c = await confirm(`${verbs[action]} ${id}?`, action === "stop"
      ? `${id} will be stopped and stay stopped until started again; the proxy drains it first.`
      : action === "restart" ? `${id} will be stopped (drained first) and started again.` : `${id} will be started.`, { danger: action !== "start" });
    if (!c) return;
    await act(`${verbs[action]} ${id}`, `/v1/instances/${encodeURIComponent(svc)}/${idx}/${action}`, c.reason ? { reason: c.reason } : {});
  },
  async rolling(name) {
    const c = await confirm(`Rolling restart of ${name}?`,
      `Each instance of ${name} is restarted in turn, waiting for it to be ready, never leaving fewer than min_available ready.`);
    if (!c) return;
    toast(`Rolling restart of ${name} started`);
    await act(`Rolling restart of ${name}`, `/v1/services/${encodeURIComponent(name)}/restart`, c.reason ? { reason: c.reason } : {});
  },
  async approval(a, verdict) {
    const approve = verdict === "approve";
    // The engine records who decided; a denial also keeps the reason.
    const c = await confirm(`${approve ? "Approve" : "Deny"} ${a.id}?`, a.summary || `${a.runbook} on ${a.target}`,
      { danger: approve, ok: approve ? "Approve" : "Deny", reason: !approve });
    if (!c) return;
    await act(`${approve ? "Approve" : "Deny"} ${a.id}`, `/v1/approvals/${encodeURIComponent(a.id)}/${verdict}`, !approve && c.reason ? { reason: c.reason } : {});
  },
  async pause(action) {
    const c = await confirm(action === "pause" ? "Pause automation?" : "Resume automation?", action === "pause"
      ? "No runbook acts until automation is resumed; conditions are still detected and recorded."
      : "Runbooks act again within their guardrails.", { danger: action === "pause", reason: false });
    if (!c) return;
    await act(action === "pause" ? "Pause automation" : "Resume automation", `/v1/automation/${action}`);
  },
  async drill(r) {
    const c = await confirm(`Run the ${r.scenario} drill on ${r.service}?`,
      `A real fault is injected into ${r.service} and the recovery measured; the drill aborts and restores at its deadline.`, { reason: false });
    if (!c) return;
    await act(`Drill ${r.scenario} on ${r.service}`, "/v1/drills", { scenario: r.scenario, service: r.service });
    kickDrills();
  },
};

// ---- renderers ----

const services = new Services($("services-body"), actions);
const traffic = new Traffic($("charts"), $("charts-empty"));
const ttr = new TTRTrend($("drills-chart"));

function showPanel(id, show) {
  $(id).hidden = !show;
  const link = document.querySelector(`nav a[data-panel="${id}"]`);
  if (link) link.hidden = !show;
}

Object.assign(renderers, {
  header() {
    setText($("version"), state.status ? "v" + state.status.version : "");
    setText($("updated"), state.status ? "as of " + new Date(state.status.time).toLocaleTimeString([], { hour12: false }) : "");
  },
  services: () => services.render(state),
  summary: () => renderSummary($("summary"), state),
  traffic: () => traffic.render(state),
  events: () => renderEvents($("events-list"), state.events, $("events-filter").value),
  audit() {
    renderAudit($("audit-rows"), $("audit-empty"), state.audit);
    const kinds = [...new Set(state.audit.map((r) => r.kind))].sort();
    $("kinds").replaceChildren(...kinds.map((k) => h("option", { value: k })));
  },
  chain: () => renderChain($("chain"), state.chain),
  scorecard() {
    showPanel("scorecard", !!state.scorecard);
    if (state.scorecard) renderScorecard($("scorecard-body"), $("score-summary"), state.scorecard, state.scoreOpen);
  },
  automation() {
    const r = state.remedy;
    const any = r.approvals || r.incidents || r.runbooks || r.conditions || r.paused !== null;
    showPanel("automation", !!any);
    $("approvals-box").hidden = !r.approvals;
    $("incidents-box").hidden = !r.incidents;
    $("runbooks-box").hidden = !r.runbooks;
    $("conditions-box").hidden = !r.conditions;
    if (r.approvals) auto.renderApprovals($("approvals"), r.approvals, state.canOperate, actions);
    if (r.incidents) auto.renderIncidents($("incidents"), r.incidents);
    if (r.runbooks) auto.renderRunbooks($("runbooks"), r.runbooks);
    if (r.conditions) auto.renderConditions($("conditions"), r.conditions);
    auto.renderPause($("pause-state"), $("pause"), r.paused, state.canOperate);
  },
  fleet() {
    showPanel("fleet", !!state.fleet);
    if (state.fleet) auto.renderFleet($("fleet-body"), $("fleet-summary"), state.fleet.status, state.fleet.card);
  },
  databases() {
    showPanel("databases", !!state.databases);
    if (state.databases) auto.renderDatabases($("databases-body"), state.databases);
  },
  deploys() {
    showPanel("deploys", !!state.deploys);
    if (state.deploys) renderDeploys($("deploys-body"), state, state.deployOpen);
  },
  drills() {
    showPanel("drills", !!state.drills);
    if (state.drills) {
      auto.renderDrills($("drills-body"), state.drills, state.canOperate, actions);
      ttr.render(state.drills);
    }
  },
});

// ---- session ----

let timers = [];

// quiesce stops every stream, timer and request of the session.
function quiesce() {
  state.session = null;
  if (stopStream) stopStream();
  stopStream = null;
  timers.forEach(clearInterval);
  timers = [];
  abortAll();
}

function signedOut(message) {
  quiesce();
  setCSRF("");
  Object.assign(state, { status: null, rates: {}, cpu: {}, marks: null, history: { services: null, instances: null },
    events: [], audit: [], chain: null, scorecard: null, databases: null, drills: null, fleet: null, deploys: null,
    remedy: { approvals: null, incidents: null, runbooks: null, conditions: null, paused: null } });
  services.reset();
  traffic.reset();
  ttr.reset();
  for (const id of ["attention", "services", "traffic", "audit", "events", "automation", "fleet", "databases", "drills", "scorecard", "deploys"]) showPanel(id, false);
  $("readonly-note").hidden = true;
  $("signout").hidden = true;
  setText($("who"), "");
  $("signin").hidden = false;
  setText($("signin-error"), message || "");
  setLive("down", "signed out");
  $("signin-token").focus();
}

function start(sess) {
  state.session = sess;
  setCSRF(sess.csrf);
  state.canOperate = sess.auth === "session" && (sess.role === "operator" || sess.role === "admin");
  document.body.dataset.role = sess.role;
  $("signin").hidden = true;
  for (const id of ["attention", "services", "traffic", "audit", "events"]) showPanel(id, true);
  setText($("who"), sess.auth === "none" ? "read-only" : `${sess.name} · ${sess.role}`);
  $("signout").hidden = sess.auth !== "session";
  const note = $("readonly-note");
  note.hidden = state.canOperate;
  setText(note, sess.auth === "none"
    ? "medic runs without a tokens file: this page is read-only for everyone. Configure api.tokens_file to sign in and act."
    : `Signed in as ${sess.name} with the ${sess.role} role: read-only. Actions need the operator role.`);
  stopStream = stream("/v1/events", onEvent, setLive);
  for (const k of [kickStatus, kickHistory, kickAudit, kickChain, kickScore, kickRemedy, kickDB, kickFleet, kickDrills, kickDeploys]) k();
  timers = [
    setInterval(kickStatus, 5000), // RSS, CPU and proxy counters change without events
    setInterval(kickHistory, 10000),
    setInterval(kickRemedy, 10000),
    setInterval(kickDB, 5000),
    setInterval(kickFleet, 5000), // the other hosts' summaries change without events here
    setInterval(kickDrills, 30000),
    setInterval(kickDeploys, 5000), // canary counts and verdicts change every 250 ms without an event each
    setInterval(kickScore, 60000),
    setInterval(kickChain, 60000),
    setInterval(() => invalidate("services"), 1000), // uptimes tick
  ];
}

async function boot() {
  try {
    const sess = await get("/ui/session");
    if (sess.auth === "required") signedOut("");
    else start(sess);
  } catch (e) {
    signedOut("Cannot reach medic: " + e.message);
  }
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("signin-token");
  try {
    const sess = await post("/ui/login", { token: input.value.trim() });
    input.value = "";
    start(sess);
  } catch (e) {
    setText($("signin-error"), e.message);
  }
});

$("signout").addEventListener("click", async () => {
  quiesce(); // nothing may ask with the cookie once it is gone
  try {
    await post("/ui/logout");
  } catch (e) {
    toast("Sign out: " + e.message, true);
  }
  signedOut("Signed out.");
});

$("pause").addEventListener("click", () => actions.pause($("pause").dataset.action || "pause"));

$("audit-filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  for (const k of Object.keys(auditFilter)) auditFilter[k] = (f.get(k) || "").trim();
  kickAudit();
});
$("audit-filters").addEventListener("reset", () => {
  Object.assign(auditFilter, { target: "", actor: "", kind: "", since: "1h" });
  setTimeout(kickAudit, 0);
});
$("events-filter").addEventListener("input", () => invalidate("events"));

// The theme toggle: the saved choice wins over the system's.
function currentTheme() {
  const t = document.documentElement.dataset.theme;
  if (t) return t;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function labelTheme() {
  setText($("theme"), currentTheme() === "dark" ? "Light" : "Dark");
}
$("theme").addEventListener("click", () => {
  const next = currentTheme() === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try {
    localStorage.setItem("medic-theme", next);
  } catch {
    /* not saved: the choice lasts for this page */
  }
  labelTheme();
  traffic.reset();
  ttr.reset();
  invalidate("traffic", "drills");
});
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  labelTheme();
  traffic.reset();
  ttr.reset();
  invalidate("traffic", "drills");
});
labelTheme();

window.medic = { state }; // for the browser tests and curious operators
boot();
