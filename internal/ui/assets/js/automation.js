// automation.js: the panels fed by the remediation engine, the database
// manager and the drills. Their endpoints may be absent from an agent that
// does not run them: main.js hides a panel whose endpoint answers 404, and
// these renderers read the documents defensively (a list, or an object
// holding the list).
import { h, replace, setText, stamp, ago, dur, pct, num, bytes } from "./dom.js";

// listOf returns doc when it is a list, else the first list under keys.
export function listOf(doc, ...keys) {
  if (Array.isArray(doc)) return doc;
  if (!doc || typeof doc !== "object") return [];
  for (const k of keys) if (Array.isArray(doc[k])) return doc[k];
  return [];
}

const levelClass = { observe: "muted", propose: "warn", act: "ok", silent: "ok" };

export function renderApprovals(root, approvals, canOperate, actions) {
  const pending = approvals.filter((a) => !a.state || a.state === "pending");
  if (pending.length === 0) {
    replace(root, h("p", { class: "empty" }, "Nothing waits for a human."));
    return;
  }
  replace(root, pending.map((a) => h("div", { class: "card", dataset: { approval: a.id } },
    h("h3", {}, h("span", { class: "badge warn" }, "approval"), h("span", { class: "mono" }, a.id)),
    h("p", {}, a.summary || `${a.runbook} on ${a.target}`),
    h("p", { class: "muted" }, `runbook ${a.runbook || "–"} · target ${a.target || "–"}${a.step ? ` · step ${a.step}` : ""}`,
      a.deadline ? ` · expires ${stamp(a.deadline)}` : ""),
    canOperate ? h("div", { class: "actions" },
      h("button", { type: "button", class: "primary", onclick: () => actions.approval(a, "approve") }, "Approve"),
      h("button", { type: "button", onclick: () => actions.approval(a, "deny") }, "Deny")) : null)));
}

export function renderConditions(root, conds) {
  const active = conds.filter((c) => c.state === "pending" || c.state === "firing");
  if (active.length === 0) {
    replace(root, h("p", { class: "empty" }, `No condition pending or firing (${conds.length} watched).`));
    return;
  }
  active.sort((a, b) => (a.state === b.state ? 0 : a.state === "firing" ? -1 : 1));
  replace(root, h("div", { class: "table-wrap" }, h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, ["Condition", "State", "Since", "Value", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, active.map((c) => h("tr", { dataset: { condition: c.condition } },
      h("td", { "data-label": "Condition", class: "mono" }, c.condition, labels(c.labels)),
      h("td", { "data-label": "State" }, h("span", { class: "badge " + (c.state === "firing" ? "bad" : "warn") }, c.state)),
      h("td", { "data-label": "Since" }, ago(c.state === "firing" ? c.fired_at || c.active_at : c.active_at)),
      h("td", { "data-label": "Value", class: "num" }, num(c.value, 2), c.confidence ? ` (confidence ${pct(c.confidence)})` : ""),
      h("td", { "data-label": "Reason", class: "reason" }, c.reason || "")))))));
}

function labels(l) {
  if (!l || typeof l !== "object") return "";
  const parts = Object.entries(l).map(([k, v]) => `${k}=${v}`);
  return parts.length ? h("span", { class: "muted" }, ` {${parts.join(", ")}}`) : "";
}

// stage shows one step of detected → decided → acted → verified as an
// offset from the incident's start.
function stage(name, t, t0) {
  if (!t || t.startsWith("0001")) return h("span", { class: "muted" }, `${name} –`);
  const off = (Date.parse(t) - Date.parse(t0)) / 1000;
  return h("span", { title: stamp(t) }, `${name} `, h("b", {}, isFinite(off) ? "+" + dur(off) : stamp(t)));
}

export function renderIncidents(root, incidents) {
  if (incidents.length === 0) {
    replace(root, h("p", { class: "empty" }, "No incident."));
    return;
  }
  const open = incidents.filter((i) => i.state === "open");
  const closed = incidents.filter((i) => i.state !== "open").slice(-6).reverse();
  replace(root, [...open.reverse(), ...closed].map((i) => {
    const cls = i.state === "open" ? "bad" : i.outcome === "recovered" || i.outcome === "resolved" ? "ok" : "warn";
    return h("div", { class: "card", dataset: { incident: i.id } },
      h("h3", {}, h("span", { class: "badge " + cls }, i.state === "open" ? "open" : i.outcome || "closed"), h("span", { class: "mono" }, i.target)),
      h("p", { class: "muted" }, `${i.id} · opened ${stamp(i.opened)}${i.runbooks && i.runbooks.length ? " · runbooks " + i.runbooks.join(", ") : ""}`),
      h("div", { class: "stages" }, stage("detected", i.detected, i.opened), stage("decided", i.decided, i.opened),
        stage("acted", i.acted, i.opened), stage("verified", i.verified, i.opened),
        i.ttr_seconds ? h("span", {}, "TTR ", h("b", {}, dur(i.ttr_seconds))) : null),
      i.timeline && i.timeline.length ? h("details", {}, h("summary", {}, `timeline (${i.timeline.length})`),
        h("ol", { class: "timeline" }, i.timeline.map((e) => h("li", {},
          h("span", { class: "muted" }, stamp(e.at).slice(11) + " "), h("span", { class: "kind" }, e.kind), " ",
          e.actor ? h("span", { class: "muted" }, e.actor + ": ") : null, e.text)))) : null);
  }));
}

export function renderRunbooks(root, books) {
  if (books.length === 0) {
    replace(root, h("p", { class: "empty" }, "No runbook is configured."));
    return;
  }
  replace(root, h("div", { class: "table-wrap" }, h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, ["Runbook", "Trigger", "Trust", "Record", "Median TTR", "Last run"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, books.map((b) => h("tr", { dataset: { runbook: b.name } },
      h("td", { "data-label": "Runbook" }, h("b", {}, b.name), b.description ? h("div", { class: "muted" }, b.description) : null),
      h("td", { "data-label": "Trigger", class: "mono" }, b.condition || "–"),
      h("td", { "data-label": "Trust" }, h("span", { class: "badge " + (levelClass[b.level] || "muted") }, b.level),
        b.max_level ? h("span", { class: "muted" }, ` max ${b.max_level}`) : null,
        b.promote_after ? h("div", { class: "muted" }, `${b.consecutive ?? 0}/${b.promote_after} toward promotion`) : null,
        b.dry_run ? h("div", { class: "badge muted" }, "dry run") : null, b.approve_required ? h("div", { class: "muted" }, "approval required") : null),
      h("td", { "data-label": "Record" }, `${b.successes ?? 0} ok, ${b.failures ?? 0} failed of ${b.runs ?? 0}`,
        b.runs ? h("span", { class: "muted" }, ` (${pct(b.success_rate)})`) : null),
      h("td", { "data-label": "Median TTR" }, b.median_ttr_seconds ? dur(b.median_ttr_seconds) : "–"),
      h("td", { "data-label": "Last run" }, b.last_run ? ago(b.last_run) : "never")))))));
}

export function renderPause(stateEl, button, paused, canOperate) {
  if (paused === null || paused === undefined) {
    stateEl.replaceChildren();
    button.hidden = true;
    return;
  }
  replace(stateEl, h("span", { class: "badge " + (paused ? "warn" : "ok") }, paused ? "automation paused" : "automation on"));
  button.hidden = !canOperate;
  setText(button, paused ? "Resume automation" : "Pause automation");
  button.dataset.action = paused ? "resume" : "pause";
}

// renderBackup shows a database's backup state (one entry of
// GET /v1/db/status's backups, internal/backup.State): the last successful
// backup, the WAL archive's lag, failed pushes, failed backups and the
// repository's free space. The archive figures exist on the primary only.
export function renderBackup(b) {
  const last = b.last;
  const took = last && (Date.parse(last.stop) - Date.parse(last.start)) / 1000;
  const lag = b.archive_lag;
  const lagBad = lag && lag.seconds > 300;
  return h("div", { class: "table-wrap", dataset: { backup: b.database } }, h("table", { class: "stack" },
    h("caption", {}, "Backups", b.running ? h("span", { class: "badge warn" }, ` ${b.running} backup running`) : null),
    h("thead", {}, h("tr", {}, ["Last backup", "Archive lag", "Failed pushes", "Failures", "Repository free"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, h("tr", {},
      h("td", { "data-label": "Last backup" }, last ? [h("b", {}, last.type || "backup"), ` ${ago(last.stop)} · ${bytes(last.size_bytes)} in ${dur(took)}`]
        : h("span", { class: "error-text" }, "none yet")),
      h("td", { "data-label": "Archive lag" }, lag ? h("span", { class: lagBad ? "error-text" : "" }, `${dur(lag.seconds || 0)} · ${lag.segments ?? 0} segments`)
        : h("span", { class: "muted" }, "on the primary")),
      h("td", { "data-label": "Failed pushes", class: "num" }, lag ? h("span", { class: b.archive_failures > 0 ? "error-text" : "" }, String(b.archive_failures ?? 0)) : "–"),
      h("td", { "data-label": "Failures", class: "num", title: b.last_error || "" }, b.failures > 0 ? h("span", { class: "error-text" }, String(b.failures)) : "0"),
      h("td", { "data-label": "Repository free" }, bytes(b.repository_free_bytes))))));
}

// renderDatabases shows each cluster's members: role, lag, lease holder, and
// its backups (GET /v1/db/status: {databases: [{cluster, member, leader,
// members}], backups: [{database, ...}]}).
export function renderDatabases(root, doc) {
  const list = listOf(doc, "databases", "clusters");
  const backups = new Map(listOf(doc, "backups").map((b) => [b.database, b]));
  if (list.length === 0) {
    replace(root, h("p", { class: "empty" }, "No database is managed."));
    return;
  }
  replace(root, list.map((c) => {
    const members = listOf(c, "members");
    const name = c.cluster || c.name || "database";
    const holder = (c.leader && c.leader.member) || "";
    const ttl = c.leader && c.leader.lease_expires_in_seconds;
    return h("div", { class: "svc", dataset: { database: name } },
      h("div", { class: "svc-head" }, h("h3", {}, name),
        holder ? h("span", {}, "lease holder ", h("b", { class: "mono" }, holder), ttl >= 0 ? h("span", { class: "muted" }, ` (lease ${dur(ttl)} left)`) : null)
          : h("span", { class: "badge bad" }, "no lease holder"),
        c.mode ? h("span", { class: "badge muted" }, c.mode) : null,
        c.etcd_reachable === false ? h("span", { class: "badge bad" }, "etcd unreachable") : null),
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ["Member", "Role", "State", "Ready", "Lag", "Timeline"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, members.map((m) => h("tr", { dataset: { member: m.name } },
          h("th", { scope: "row", "data-label": "Member", class: "mono" }, m.name, m.name === holder ? h("span", { class: "muted" }, " (lease)") : null,
            m.name === c.member ? h("span", { class: "muted" }, " (this agent)") : null),
          h("td", { "data-label": "Role" }, h("span", { class: "badge " + (m.role === "primary" ? "ok" : m.role === "replica" ? "muted" : "warn") }, m.role || "unknown")),
          h("td", { "data-label": "State" }, m.state || "–"),
          h("td", { "data-label": "Ready" }, m.ready ? "yes" : h("span", { class: "error-text" }, "no")),
          h("td", { "data-label": "Lag" }, m.role === "primary" ? "–" : `${bytes(m.lag_bytes) === "–" ? "0 B" : bytes(m.lag_bytes)} · ${dur(m.lag_seconds || 0)}`),
          h("td", { "data-label": "Timeline", class: "num" }, m.timeline ?? "–")))))),
      backups.has(name) ? renderBackup(backups.get(name)) : null);
  }));
}

// renderDrills shows the last run of each failure mode.
export function renderDrills(root, runs, canOperate, actions) {
  if (runs.length === 0) {
    replace(root, h("p", { class: "empty" }, "No drill has run yet: ", h("code", {}, "medic drill kill --service NAME"), " runs one."));
    return;
  }
  const last = new Map();
  for (const r of runs) {
    const k = `${r.failure_mode || r.scenario}\u0000${r.service || ""}`;
    const t = Date.parse(r.started);
    if (!last.has(k) || t > last.get(k).t) last.set(k, { t, r });
  }
  const rows = [...last.values()].sort((a, b) => (a.r.failure_mode || a.r.scenario).localeCompare(b.r.failure_mode || b.r.scenario));
  const verdict = (r) => (r.state === "running" ? ["running", "warn"] : r.state === "aborted" ? ["aborted", "muted"] : r.passed ? ["passed", "ok"] : ["failed", "bad"]);
  replace(root, h("div", { class: "table-wrap" }, h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, ["Failure mode", "Target", "Verdict", "When", "TTD", "TTR", "Client errors", canOperate && actions.drill ? "Run" : null]
      .filter((x) => x !== null).map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map(({ t, r }) => h("tr", { dataset: { drill: r.scenario } },
      h("th", { scope: "row", "data-label": "Failure mode", class: "mono", title: r.summary || "" }, r.failure_mode || r.scenario,
        r.failure_mode && r.failure_mode !== r.scenario ? h("span", { class: "muted" }, ` (${r.scenario})`) : null),
      h("td", { "data-label": "Target", class: "mono" }, r.target || r.service || "–"),
      h("td", { "data-label": "Verdict" }, h("span", { class: "badge " + verdict(r)[1] }, verdict(r)[0])),
      h("td", { "data-label": "When" }, isNaN(t) ? "–" : ago(new Date(t).toISOString())),
      h("td", { "data-label": "TTD" }, dur(r.ttd_seconds)),
      h("td", { "data-label": "TTR" }, dur(r.ttr_seconds)),
      h("td", { "data-label": "Client errors", class: "num" }, r.requests ? `${r.client_errors ?? 0} of ${r.requests}` : r.client_errors ?? "–"),
      canOperate && actions.drill ? h("td", { "data-label": "Run" }, h("button", { type: "button", class: "small",
        "aria-label": `Run the ${r.scenario} drill on ${r.service || "its target"} again`, onclick: () => actions.drill(r) }, "Run again")) : null))))));
}

// renderFleet shows every host of the fleet from the summaries they publish
// in etcd (GET /v1/fleet/status) and the fleet's scorecard, which is yes
// only from every host's own answer (GET /v1/fleet/scorecard).
export function renderFleet(root, summary, st, card) {
  const hosts = listOf(st, "hosts");
  setText(summary, card ? `scorecard: ${card.yes} yes · ${card.no} no · ${card.unknown} unknown` : "");
  const stateClass = { up: "ok", suspect: "warn", lost: "bad" };
  replace(root, [
    st.watching ? null : h("p", { class: "note" }, "This agent has not read the fleet from etcd yet: the list is incomplete."),
    h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ["Host", "State", "Services (ready/desired)", "Audit head", "Summary"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, hosts.map((m) => {
        const s = m.summary;
        return h("tr", { dataset: { host: m.host } },
          h("th", { scope: "row", "data-label": "Host", class: "mono" }, m.host, m.self ? h("span", { class: "muted" }, " (this agent)") : null),
          h("td", { "data-label": "State" }, h("span", { class: "badge " + (stateClass[m.state] || "muted") }, m.state || "unknown")),
          h("td", { "data-label": "Services" }, s ? (listOf(s, "services").map((x) => `${x.name} ${x.ready}/${x.desired}`).join(" · ") || "–") : "–"),
          h("td", { "data-label": "Audit head", class: "num" }, s && s.audit ? String(s.audit.seq) : "–"),
          h("td", { "data-label": "Summary" }, s ? `${dur(m.age_seconds || 0)} old` : h("span", { class: "muted" }, "none")));
      })))),
    card ? h("p", { class: "muted" }, "Fleet scorecard: yes only when every host that is not lost answers yes",
      card.excluded && card.excluded.length ? ` (lost, not asked: ${card.excluded.join(", ")})` : "", ".") : null,
  ].filter(Boolean));
}
