// panels.js: the overview strip, the audit log, the live events and the
// scorecard. Each render function takes the state and rebuilds its panel's
// content (these lists are short and not focus targets).
import { h, replace, setText, clock, stamp, ago } from "./dom.js";

// renderSummary answers "what is sick, what did medic do, what waits for a
// human, is recovery proven" in one strip of counts, each linking to its panel.
export function renderSummary(root, state) {
  const st = state.status;
  if (!st) return;
  const items = [];
  const au = st.audit;
  if (au && au.degraded) {
    // First: while it lasts, medic takes no remediation and records are held or lost.
    items.push(["#audit", "DEGRADED", `audit log: ${au.reason}; remediation paused (${au.held} held, ${au.lost} lost)`, "bad"]);
  }
  const svcs = st.services || [];
  const insts = svcs.flatMap((s) => s.instances || []);
  const healthy = svcs.filter((s) => s.ready === s.desired).length;
  items.push(["#services", `${healthy}/${svcs.length}`, "services fully ready", healthy === svcs.length ? "ok" : "bad"]);
  const sick = insts.filter((i) => !i.ready && i.state !== "stopped").length;
  items.push(["#services", String(sick), sick === 1 ? "instance not ready" : "instances not ready", sick ? "bad" : "ok"]);
  const loops = insts.filter((i) => i.state === "crashloop" || i.state === "failed").length;
  if (loops) items.push(["#services", String(loops), "in crash loop or failed", "bad"]);
  const restarts = insts.reduce((n, i) => n + (i.restarts || 0), 0);
  items.push(["#events", String(restarts), "restarts since start", restarts ? "warn" : "ok"]);
  const r = state.remedy;
  if (r.conditions) {
    const firing = r.conditions.filter((c) => c.state === "firing").length;
    items.push(["#automation", String(firing), "conditions firing", firing ? "bad" : "ok"]);
  }
  if (r.approvals) {
    const n = r.approvals.filter((a) => !a.state || a.state === "pending").length;
    items.push(["#automation", String(n), "waiting for approval", n ? "warn" : "ok"]);
  }
  if (r.incidents) {
    const open = r.incidents.filter((i) => i.state === "open").length;
    items.push(["#automation", String(open), "open incidents", open ? "bad" : "ok"]);
  }
  if (r.paused !== null && r.paused !== undefined) items.push(["#automation", r.paused ? "paused" : "on", "automation", r.paused ? "warn" : "ok"]);
  if (state.scorecard) {
    const c = state.scorecard;
    items.push(["#scorecard", `${c.yes}/${c.items.length}`, "scorecard answers yes", c.passed ? (c.no ? "warn" : "ok") : "bad"]);
  }
  if (state.chain && !state.chain.degraded) {
    items.push(["#audit", state.chain.ok ? "intact" : "BROKEN", `audit chain, ${state.chain.records} record${state.chain.records === 1 ? "" : "s"}`, state.chain.ok ? "ok" : "bad"]);
  }
  replace(root, items.map(([href, big, label, cls]) =>
    h("li", { class: cls }, h("a", { href }, h("span", { class: "big" }, big), h("span", { class: "label" }, label)))));
}

export function renderChain(el, chain) {
  if (!chain) return;
  if (chain.degraded) {
    replace(el, h("span", { class: "badge bad", title: chain.error || "" }, `audit DEGRADED: ${chain.error}`));
    return;
  }
  replace(el, chain.ok
    ? h("span", { class: "badge ok", title: "every record's hash chains to the one before" }, `chain verified · ${chain.records} record${chain.records === 1 ? "" : "s"}`)
    : h("span", { class: "badge bad", title: chain.error || "" }, `chain BROKEN: ${chain.error || "verification failed"}`));
}

export function renderAudit(tbody, emptyEl, records) {
  const rows = [...records].reverse().map((r) => h("tr", {},
    h("td", { class: "num", "data-label": "#" }, r.seq),
    h("td", { "data-label": "Time", title: r.time }, stamp(r.time)),
    h("td", { "data-label": "Actor", class: "mono" }, r.actor),
    h("td", { "data-label": "Kind", class: "kind" }, r.kind),
    h("td", { "data-label": "Target", class: "mono" }, r.target || "–"),
    h("td", { "data-label": "Reason", class: "reason" }, r.reason || "")));
  tbody.replaceChildren(...rows);
  emptyEl.hidden = rows.length > 0;
}

const MAX_EVENTS = 200;

export function renderEvents(list, events, filter) {
  const f = filter.trim().toLowerCase();
  const out = [];
  for (let i = events.length - 1; i >= 0 && out.length < MAX_EVENTS; i--) {
    const ev = events[i];
    if (f && !`${ev.kind} ${ev.target} ${ev.actor} ${ev.reason}`.toLowerCase().includes(f)) continue;
    out.push(h("li", { dataset: { kind: ev.kind, target: ev.target } },
      h("span", { class: "muted", title: ev.time }, clock(ev.time)),
      h("span", { class: "kind" }, ev.kind),
      h("span", { class: "mono target" }, ev.target),
      h("span", { class: "reason" }, ev.actor ? h("span", { class: "muted" }, ev.actor + ": ") : null, ev.reason)));
  }
  if (out.length === 0) out.push(h("li", { class: "empty" }, f ? "No event matches the filter." : "No event yet."));
  list.replaceChildren(...out);
}

const answerClass = { yes: "ok", no: "bad", unknown: "warn" };

export function renderScorecard(body, summary, card, open) {
  setText(summary, `${card.yes} yes · ${card.no} no · ${card.unknown} unknown`);
  const items = card.items.map((it) => {
    const d = h("details", { dataset: { item: it.id } },
      h("summary", {},
        h("span", { class: "badge " + answerClass[it.answer] }, it.answer),
        h("span", { class: "q" }, `${it.n}. ${it.question}`, it.required ? h("span", { class: "muted" }, " · required") : null)),
      it.subjects.map((s) => h("div", { class: "subject" },
        h("b", {}, s.name), " ", h("span", { class: "badge " + answerClass[s.answer] }, s.answer),
        h("ul", {},
          (s.evidence || []).map((e) => h("li", {}, e)),
          (s.fix || []).map((f) => h("li", { class: "fix" }, f))))));
    if (open.has(it.id)) d.open = true;
    d.addEventListener("toggle", () => (d.open ? open.add(it.id) : open.delete(it.id)));
    return d;
  });
  body.replaceChildren(...items);
}

export { ago };
