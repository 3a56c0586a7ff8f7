// deploys.js: the deploys panel. Per service: the deploy under way (its
// strategy, the step a rollout waits for, the proxy's groups and weights),
// the newest canary and its verdict metric by metric (samples, values,
// effect, the likelihood ratio or p-value against its threshold, and why it
// passed, failed or goes on), and the release history (version, who, when,
// outcome). It reads the documents the CLI prints: /v1/status (`medic
// status`), /v1/canaries (each service's `medic deploy status`) and
// /v1/services/S/releases (`medic releases S`). Every string is text.
import { h, replace, stamp, dur, num, pct } from "./dom.js";

const outcomeClass = { live: "ok", promoted: "ok", "rolling-out": "warn", superseded: "muted", failed: "bad", "rolled-back": "bad" };
const decisionClass = { pass: "ok", fail: "bad", continue: "warn" };
const phaseClass = {
  starting: "warn", stepping: "warn", "awaiting-approval": "warn", promoting: "warn",
  promoted: "ok", "rolling-back": "bad", "rolled-back": "bad",
};

// MAX_RELEASES bounds the history rows shown per service (the store keeps
// release_history, default 10).
const MAX_RELEASES = 10;

const badge = (text, cls) => h("span", { class: "badge " + (cls || "muted") }, text);

// ms renders seconds of latency as milliseconds.
function ms(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  const v = s * 1000;
  return (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString()) + " ms";
}

function signedPct(x, digits = 1) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  return (x >= 0 ? "+" : "−") + Math.abs(x * 100).toFixed(digits) + "%";
}

const isRate = (m) => /^(errors|scraped) /.test(m.name || ""); // rates per request
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// metricValue is a group's figure: an error rate, or a latency (none yet
// while a tail test waits for its minimum sample).
function metricValue(m, v) {
  if (isRate(m)) return pct(v);
  return v ? ms(v) : "–";
}

// effect: for errors the canary's rate minus the baseline's (points); for
// latency the shift relative to the baseline.
function effect(m) {
  if (!isRate(m) && !m.canary_value) return "–";
  if (isRate(m)) return `${m.effect >= 0 ? "+" : "−"}${Math.abs(m.effect * 100).toFixed(2)} pts`;
  return signedPct(m.effect);
}

// statistic: the sequential test's log likelihood ratio or Mann-Whitney's p,
// with what it was compared with.
function statistic(m) {
  const parts = [];
  if (m.test === "sprt") parts.push(`log LR ${num(m.log_lr ?? 0, 2)}`);
  else if (m.test === "mann-whitney") parts.push(`p = ${m.p_value ? m.p_value.toPrecision(2) : "–"}`);
  else parts.push(m.test || "");
  if (m.threshold) parts.push(m.threshold);
  return parts.join(" · ");
}

function weightsText(w) {
  if (!w) return "–";
  return `stable ${w.Stable ?? 0}% · canary ${w.Canary ?? 0}% · baseline ${w.Baseline ?? 0}%`;
}

// current describes the deploy under way, or null: a canary not ended, a
// blue-green or canary set of proxy groups, or a rollout's waiting step.
function current(svc, proxy, canary) {
  const groups = (proxy && proxy.groups) || [];
  const weighted = groups.some((g) => g.weight > 0) || groups.some((g) => g.group !== "stable");
  const running = canary && !canary.outcome && canary.state && !["promoted", "rolled-back"].includes(canary.state.phase);
  if (!running && !weighted && !svc.rollout) return null;
  const lines = [];
  if (running) {
    const st = canary.state;
    const steps = canary.steps || [];
    const at = st.phase === "starting" ? "before the first step" : `step ${st.step + 1} of ${steps.length} (${steps[st.step] ?? "–"}%)`;
    lines.push(h("p", { class: "figures" },
      h("span", {}, "canary ", h("b", {}, canary.to), " beside ", h("b", {}, canary.from)),
      h("span", {}, badge(st.phase, phaseClass[st.phase])),
      h("span", {}, at),
      h("span", {}, "weights: ", weightsText(canary.weights))));
  }
  if (svc.rollout) lines.push(h("p", { class: "figures" }, h("span", {}, "rollout waits for: ", h("b", {}, svc.rollout))));
  if (groups.length) {
    lines.push(h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("caption", { class: "visually-hidden" }, `Proxy groups of ${svc.name}`),
      h("thead", {}, h("tr", {}, ["Group", "Weight", "In rotation", "Requests", "5xx", "No answer"].map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
      h("tbody", {}, groups.map((g) => h("tr", { dataset: { group: g.group } },
        h("td", { "data-label": "Group", class: "mono" }, g.group),
        h("td", { "data-label": "Weight", class: "num" }, weighted ? `${g.weight}%` : "–"),
        h("td", { "data-label": "In rotation", class: "num" }, `${g.in_rotation} of ${g.instances}`),
        h("td", { "data-label": "Requests", class: "num" }, num(g.requests, 0)),
        h("td", { "data-label": "5xx", class: "num" }, num((g.by_class || [])[5] ?? 0, 0)),
        h("td", { "data-label": "No answer", class: "num" }, num((g.by_class || [])[0] ?? 0, 0))))))));
  }
  return lines;
}

// verdictTable lists the verdict's metrics.
function verdictTable(name, v) {
  const metrics = (v && v.metrics) || [];
  if (!metrics.length) return h("p", { class: "empty" }, "No verdict yet: the canary has not served enough requests.");
  return h("div", { class: "table-wrap" }, h("table", { class: "stack verdict" },
    h("caption", { class: "visually-hidden" }, `Canary verdict of ${name}, metric by metric`),
    h("thead", {}, h("tr", {}, ["Metric", "Decision", "Samples (canary / baseline)", "Canary", "Baseline", "Effect", "Statistic", "Why"]
      .map((c, i) => h("th", { scope: "col", class: i >= 2 && i <= 5 ? "num" : null }, c)))),
    h("tbody", {}, metrics.map((m) => h("tr", { dataset: { metric: m.name, decision: m.decision } },
      h("td", { "data-label": "Metric" }, m.name),
      h("td", { "data-label": "Decision" }, badge(m.decision, decisionClass[m.decision])),
      h("td", { "data-label": "Samples", class: "num" }, `${m.canary_samples} / ${m.baseline_samples}`),
      h("td", { "data-label": "Canary", class: "num" }, metricValue(m, m.canary_value)),
      h("td", { "data-label": "Baseline", class: "num" }, metricValue(m, m.baseline_value)),
      h("td", { "data-label": "Effect", class: "num metric" }, effect(m)),
      h("td", { "data-label": "Statistic", class: "reason" }, statistic(m)),
      h("td", { "data-label": "Why", class: "reason" }, m.reason, m.need ? h("span", { class: "muted" }, ` (about ${m.need} more requests per group)`) : null))))));
}

// canaryBlock is the newest canary of a service: who, what, its outcome and
// times, the verdict and the timeline.
function canaryBlock(name, c, open) {
  const st = c.state || {};
  const outcome = c.outcome || st.phase;
  const figs = [
    h("span", {}, h("b", {}, c.from), " → ", h("b", {}, c.to), " by ", h("span", { class: "mono" }, c.actor)),
    h("span", {}, badge(outcome, outcomeClass[outcome] || phaseClass[outcome])),
    h("span", {}, "steps ", (c.steps || []).map((s) => s + "%").join(" → ")),
    h("span", {}, `canary ${plural(c.canary_requests, "request", "requests")}, ${plural(c.canary_errors, "error", "errors")} · ` +
      `baseline ${plural(c.baseline_requests, "request", "requests")}, ${plural(c.baseline_errors, "error", "errors")}`),
  ];
  if (c.synthetic_requests) figs.push(h("span", {}, `${c.synthetic_requests} of them sent by medic`));
  if (c.requests !== undefined && c.requests !== null) {
    figs.push(h("span", {}, `clients: ${c.client_errors} failed of ${c.requests}${c.requests ? " (" + pct(c.client_errors / c.requests) + ")" : ""}`));
  }
  if (c.time_to_verdict_seconds) figs.push(h("span", {}, "verdict after ", h("b", {}, dur(c.time_to_verdict_seconds))));
  if (c.time_to_rollback_seconds) figs.push(h("span", {}, "traffic back after ", h("b", {}, dur(c.time_to_rollback_seconds))));
  const v = st.verdict || {};
  return h("div", { class: "canary", dataset: { canary: name } },
    h("h4", {}, "Canary"),
    h("p", { class: "figures" }, figs),
    st.reason ? h("p", { class: "reason-line" }, st.reason) : null,
    c.error ? h("p", { class: "error-text" }, c.error) : null,
    h("p", { class: "figures" }, h("span", {}, "verdict: ", badge(v.decision || "continue", decisionClass[v.decision || "continue"])),
      v.reason && !(st.reason || "").includes(v.reason) ? h("span", { class: "reason-line" }, v.reason) : null),
    verdictTable(name, v),
    (c.timeline || []).length
      ? timeline(name, c.timeline, open)
      : null);
}

// timeline is the canary's events, folded; it stays open across renders.
function timeline(name, events, open) {
  const d = h("details", {}, h("summary", {}, `Timeline (${plural(events.length, "event", "events")})`),
    h("ul", { class: "timeline" }, events.map((e) => h("li", {},
      h("span", { class: "muted", title: e.at }, stamp(e.at)), " ", h("span", { class: "kind" }, e.kind), " ", e.reason))));
  if (open.has(name)) d.open = true;
  d.addEventListener("toggle", () => (d.open ? open.add(name) : open.delete(name)));
  return d;
}

function took(r) {
  return r.duration_seconds === undefined || r.duration_seconds === null ? "–" : dur(r.duration_seconds);
}

function clientErrors(r) {
  if (r.requests === undefined || r.requests === null) return "–";
  return `${r.client_errors ?? 0} of ${r.requests}`;
}

// historyTable is the release history, newest first.
function historyTable(name, list) {
  if (!list) return null;
  if (!list.length) return h("p", { class: "empty" }, "No release recorded.");
  return h("div", { class: "table-wrap" }, h("table", { class: "stack releases" },
    h("caption", { class: "visually-hidden" }, `Release history of ${name}, newest first`),
    h("thead", {}, h("tr", {}, ["#", "Version", "Source", "Who", "When", "Outcome", "Took", "Client errors", "Reason"]
      .map((c, i) => h("th", { scope: "col", class: i === 0 || i === 6 || i === 7 ? "num" : null }, c)))),
    h("tbody", {}, list.slice(0, MAX_RELEASES).map((r) => h("tr", { dataset: { release: r.seq } },
      h("td", { "data-label": "#", class: "num" }, r.seq),
      h("td", { "data-label": "Version", class: "mono" }, r.version),
      h("td", { "data-label": "Source" }, r.source),
      h("td", { "data-label": "Who", class: "mono" }, r.actor),
      h("td", { "data-label": "When", title: r.created }, stamp(r.created)),
      h("td", { "data-label": "Outcome" }, badge(r.outcome, outcomeClass[r.outcome])),
      h("td", { "data-label": "Took", class: "num" }, took(r)),
      h("td", { "data-label": "Client errors", class: "num" }, clientErrors(r)),
      h("td", { "data-label": "Reason", class: "reason" }, r.reason || "", r.detail ? h("span", { class: "muted" }, " · " + r.detail) : null))))));
}

// renderDeploys rebuilds the panel from state.status and state.deploys
// ({releases: {service: [release]}, canaries: {service: report}}); open
// holds the services whose canary timeline is unfolded.
export function renderDeploys(root, state, open) {
  const st = state.status;
  if (!st) return;
  const d = state.deploys || { releases: {}, canaries: {} };
  const proxies = new Map((st.proxies || []).map((p) => [p.service, p]));
  const blocks = (st.services || []).map((svc) => {
    const canary = d.canaries[svc.name];
    const cur = current(svc, proxies.get(svc.name), canary);
    const live = (d.releases[svc.name] || []).find((r) => r.outcome === "live");
    return h("div", { class: "svc deploy", dataset: { deploy: svc.name } },
      h("div", { class: "svc-head" },
        h("h3", {}, svc.name),
        badge(svc.strategy || "rolling", "muted"),
        live ? h("span", {}, "running ", h("b", { class: "mono" }, live.version)) : null,
        cur ? badge("deploy under way", "warn") : h("span", { class: "muted" }, "no deploy under way")),
      cur,
      canary ? canaryBlock(svc.name, canary, open) : null,
      historyTable(svc.name, d.releases[svc.name]));
  });
  replace(root, blocks.length ? blocks : h("p", { class: "empty" }, "No service is configured."));
}
