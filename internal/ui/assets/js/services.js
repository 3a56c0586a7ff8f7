// services.js: the services panel. Rows are keyed by instance id and
// updated in place (text only where it changed), so a re-render every 250 ms
// of 200 instances costs little, and keyboard focus stays on its button.
import { h, setText, setAttr, bytes, dur, ago, num, pct, sparkline } from "./dom.js";

const stateClass = {
  running: "ok", starting: "warn", pending: "warn", stopping: "warn",
  backoff: "bad", crashloop: "bad", failed: "bad", stopped: "muted", unknown: "muted",
};

export function badge(el, text, cls) {
  setText(el, text);
  setAttr(el, "class", "badge " + cls);
}

// latest returns the last non-null value of a history series.
export function latest(series) {
  if (!series) return null;
  for (let i = series.length - 1; i >= 0; i--) if (series[i] !== null) return series[i];
  return null;
}

// flash highlights a cell that just changed. Alternating between two
// identical animations restarts it without forcing a layout (reading
// offsetWidth per row would, 200 times per render).
function flash(el) {
  const next = el.classList.contains("changed-a") ? "changed-b" : "changed-a";
  el.classList.remove("changed-a", "changed-b");
  el.classList.add(next);
}

const columns = ["Instance", "State", "Ready", "Traffic", "Restarts", "Uptime", "Last exit", "Memory", "CPU", "Actions"];

export class Services {
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.svcs = new Map();
  }

  reset() {
    this.root.replaceChildren();
    this.svcs.clear();
  }

  render(state) {
    const st = state.status;
    if (!st) return;
    const seen = new Set();
    if (!st.services || st.services.length === 0) {
      this.root.replaceChildren(h("p", { class: "empty" }, "No service is configured."));
      this.svcs.clear();
      return;
    }
    const empty = this.root.querySelector(":scope > p.empty");
    if (empty) empty.remove();
    const proxies = new Map((st.proxies || []).map((p) => [p.service, p]));
    const deps = new Map();
    for (const d of st.dependencies || []) {
      if (!deps.has(d.service)) deps.set(d.service, []);
      deps.get(d.service).push(d);
    }
    let prev = null;
    for (const svc of st.services) {
      seen.add(svc.name);
      let e = this.svcs.get(svc.name);
      if (!e) {
        e = this.build(svc.name);
        this.svcs.set(svc.name, e);
      }
      // Keep the services in status order.
      const want = prev ? prev.nextSibling : this.root.firstChild;
      if (want !== e.el) this.root.insertBefore(e.el, want);
      prev = e.el;
      this.update(e, svc, proxies.get(svc.name), state);
      this.dependencies(e, deps.get(svc.name) || []);
    }
    for (const [name, e] of this.svcs) {
      if (!seen.has(name)) {
        e.el.remove();
        this.svcs.delete(name);
      }
    }
  }

  build(name) {
    const e = { rows: new Map() };
    e.ready = h("span", { class: "badge" });
    e.budget = h("span", { class: "muted" });
    e.roll = h("button", { type: "button", class: "small op-only", onclick: () => this.actions.rolling(name) }, "Rolling restart");
    e.figures = h("div", { class: "figures", "aria-label": `${name} proxy figures` });
    e.tbody = h("tbody");
    e.el = h("article", { class: "svc", id: "svc-" + name, dataset: { service: name } },
      h("div", { class: "svc-head" }, h("h3", {}, name), e.ready, e.budget, h("span", { class: "actions" }, e.roll)),
      e.figures,
      (e.deps = h("div", { class: "figures deps", "aria-label": `${name} dependencies`, hidden: true })),
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("caption", { class: "visually-hidden" }, `Instances of ${name}`),
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c === "Restarts" ? "num" : null }, c)))),
        e.tbody)));
    return e;
  }

  update(e, svc, px, state) {
    const insts = svc.instances || [];
    badge(e.ready, `${svc.ready}/${svc.desired} ready`, svc.ready === svc.desired ? "ok" : svc.ready > 0 ? "warn" : "bad");
    setText(e.budget, `min available ${svc.min_available}`);
    e.roll.hidden = !state.canOperate;
    this.figures(e, svc.name, px, state);
    const pinst = new Map(((px && px.instances) || []).map((i) => [i.id, i]));
    const seen = new Set();
    let prev = null;
    for (const inst of insts) {
      seen.add(inst.id);
      let r = e.rows.get(inst.id);
      if (!r) {
        r = this.row(inst);
        e.rows.set(inst.id, r);
      }
      const want = prev ? prev.nextSibling : e.tbody.firstChild;
      if (want !== r.tr) e.tbody.insertBefore(r.tr, want);
      prev = r.tr;
      this.updateRow(r, inst, px ? pinst.get(inst.id) || null : undefined, state);
    }
    for (const [id, r] of e.rows) {
      if (!seen.has(id)) {
        r.tr.remove();
        e.rows.delete(id);
      }
    }
  }

  // dependencies shows each outbound dependency: its breaker, calls, and what medic refused or answered.
  dependencies(e, list) {
    if (list.length === 0 && e.deps.hidden) return; // nothing declared: no work per render
    e.deps.hidden = list.length === 0;
    e.deps.replaceChildren(...list.map((d) => {
      const calls = Object.values(d.calls || {}).reduce((a, b) => a + b, 0);
      const c = d.calls || {};
      const b = h("span", { class: "badge" });
      badge(b, `${d.dependency}: ${d.state}`, d.state === "closed" ? "ok" : d.state === "half-open" ? "warn" : "bad");
      return h("span", { title: `${d.target} through ${d.listen}, timeout ${dur(d.timeout / 1e9)}` }, b,
        ` ${calls} calls, ${(c.error || 0) + (c.timeout || 0)} failed, ${(c.open || 0) + (c.shed || 0)} refused, ${d.fallbacks || 0} fallbacks, p99 ${dur(d.latency_p99_seconds)}`);
    }));
  }

  figures(e, name, px, state) {
    if (!px) {
      if (!e.noProxy) {
        e.figures.replaceChildren(h("span", { class: "muted" }, "No proxy: clients connect to the instances directly."));
        e.noProxy = true;
        e.fig = null;
      }
      return;
    }
    if (!e.fig) {
      e.noProxy = false;
      const f = (label) => {
        const b = h("b");
        e.figures.append(h("span", {}, label + " ", b));
        return b;
      };
      e.figures.replaceChildren();
      e.fig = { listen: f("proxy"), rps: f("requests/s"), err: f("errors"), p99: f("p99"), ejected: f("ejected"),
        shed: f("shed/s"), retried: f("retried/s"), inflight: f("in flight") };
      e.fig.panic = h("span", { class: "badge bad", hidden: true }, "panic: all ready instances serve");
      e.figures.append(e.fig.panic);
    }
    // Rates from the last two status documents, else the last history sample.
    const hist = state.history.services?.series || {};
    const last = (what) => latest(hist[`service/${name}/${what}`]);
    const rate = state.rates[name] || { rps: last("rps"), errorRate: last("error_rate"), shed: last("shed_rps"), retried: last("retried_rps") };
    const p99 = last("p99_seconds");
    const ejected = (px.instances || []).filter((i) => i.breaker === "open" || (i.ejected_until && Date.parse(i.ejected_until) > Date.now())).length;
    setText(e.fig.listen, `${px.listen} (${px.mode})`);
    setText(e.fig.rps, num(rate.rps));
    setText(e.fig.err, pct(rate.errorRate));
    setText(e.fig.p99, p99 === null ? "–" : dur(p99));
    setText(e.fig.ejected, `${ejected}/${(px.instances || []).length}`);
    setText(e.fig.shed, num(rate.shed));
    setText(e.fig.retried, num(rate.retried));
    setText(e.fig.inflight, String(px.inflight ?? 0) + (px.concurrency_limit ? ` of ${px.concurrency_limit}` : ""));
    e.fig.panic.hidden = !px.panic;
  }

  row(inst) {
    const r = {};
    const td = (label, cls) => h("td", { "data-label": label, class: cls || null });
    r.id = h("span", { class: "mono" });
    r.pid = h("span", { class: "muted" });
    r.state = h("span", { class: "badge" });
    r.ready = h("span", { class: "badge" });
    r.traffic = h("span");
    r.restarts = td("Restarts", "num");
    r.uptime = td("Uptime");
    r.exit = td("Last exit", "reason");
    r.rss = h("span");
    r.cpu = h("span");
    r.rssSpark = sparkline(null, []);
    r.cpuSpark = sparkline(null, []);
    const [svc, idx] = splitID(inst.id);
    r.restart = h("button", { type: "button", class: "small op-only", onclick: () => this.actions.instance(inst.id, "restart") }, "Restart");
    r.toggle = h("button", { type: "button", class: "small op-only", onclick: () => this.actions.instance(inst.id, r.toggle.dataset.action) }, "Stop");
    r.log = h("a", { href: `/v1/logs/${encodeURIComponent(svc)}/${idx}?tail=200`, target: "_blank", rel: "noopener" }, "Log");
    r.tr = h("tr", { dataset: { instance: inst.id } },
      h("th", { scope: "row", "data-label": "Instance" }, r.id, " ", r.pid),
      h("td", { "data-label": "State" }, r.state),
      h("td", { "data-label": "Ready" }, r.ready),
      h("td", { "data-label": "Traffic" }, r.traffic),
      r.restarts, r.uptime, r.exit,
      h("td", { "data-label": "Memory" }, h("span", { class: "metric" }, r.rss, r.rssSpark)),
      h("td", { "data-label": "CPU" }, h("span", { class: "metric" }, r.cpu, r.cpuSpark)),
      h("td", { "data-label": "Actions" }, h("span", { class: "actions" }, r.restart, r.toggle, r.log)));
    setText(r.id, inst.id);
    return r;
  }

  updateRow(r, inst, pi, state) {
    const hist = state.history.instances?.series || {};
    const s = inst.state || "unknown";
    if (r.lastState !== undefined && r.lastState !== s) flash(r.state);
    r.lastState = s;
    setAttr(r.tr, "data-state", s);
    badge(r.state, s, stateClass[s] || "muted");
    if (inst.reason) setAttr(r.state, "title", inst.reason);
    setText(r.pid, inst.pid ? `pid ${inst.pid}` : "");
    badge(r.ready, inst.ready ? "ready" : "not ready", inst.ready ? "ok" : s === "stopped" ? "muted" : "warn");
    const probe = inst.probes && inst.probes.readiness;
    setAttr(r.ready, "title", probe ? `readiness ${probe.health}${probe.detail ? ": " + probe.detail : ""}` : "no readiness probe");
    setText(r.traffic, traffic(pi));
    setText(r.restarts, inst.restarts ?? 0);
    const running = s === "running" || s === "starting";
    setText(r.uptime, running && inst.started_at ? dur((Date.now() - Date.parse(inst.started_at)) / 1000) : "–");
    const ex = inst.last_exit;
    setText(r.exit, ex ? `${ex.reason || (ex.signal ? "signal " + ex.signal : "exit " + ex.code)} · ${ago(ex.at)}` : "–");
    setText(r.rss, bytes(inst.rss_bytes));
    sparkline(r.rssSpark, hist[`instance/${inst.id}/rss_bytes`]);
    const cpu = state.cpu[inst.id] ?? latest(hist[`instance/${inst.id}/cpu`]);
    setText(r.cpu, cpu === undefined || cpu === null ? "–" : pct(cpu));
    sparkline(r.cpuSpark, hist[`instance/${inst.id}/cpu`]);
    r.restart.hidden = r.toggle.hidden = !state.canOperate;
    const stopped = s === "stopped" || s === "failed";
    const action = stopped ? "start" : "stop";
    if (r.toggle.dataset.action !== action) {
      r.toggle.dataset.action = action;
      setText(r.toggle, stopped ? "Start" : "Stop");
    }
    r.restart.disabled = stopped;
    setAttr(r.restart, "aria-label", `Restart ${inst.id}`);
    setAttr(r.toggle, "aria-label", `${stopped ? "Start" : "Stop"} ${inst.id}`);
    setAttr(r.log, "aria-label", `Log of ${inst.id}`);
  }
}

function traffic(pi) {
  if (pi === undefined) return "–"; // no proxy
  if (pi === null) return "not registered";
  if (pi.draining) return "draining";
  if (pi.breaker === "open") {
    const left = pi.ejected_until ? (Date.parse(pi.ejected_until) - Date.now()) / 1000 : 0;
    return left > 0 ? `ejected, ${dur(left)} left` : "ejected";
  }
  if (pi.breaker === "half-open") return "on trial";
  if (pi.in_rotation) return "in rotation";
  return pi.ready ? "out" : "out (not ready)";
}

export function splitID(id) {
  const i = id.lastIndexOf("/");
  return [id.slice(0, i), id.slice(i + 1)];
}
