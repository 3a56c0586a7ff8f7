// charts.js: the hour of traffic history per proxied service, drawn with
// uPlot (vendored in /ui/assets/vendor/uplot, loaded before this module).
// Each chart is created once and fed with setData; a ResizeObserver keeps
// it as wide as its box. A theme change rebuilds the charts in the new colours.
import { h, setAttr, num, pct, dur } from "./dom.js";
import { latest } from "./services.js";

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function axis(size) {
  return { stroke: css("--muted"), grid: { stroke: css("--border"), width: 1 }, ticks: { stroke: css("--border"), width: 1 }, size };
}

// Chart wraps one uPlot with its box and data shape.
class Chart {
  constructor(box, title, series, opts = {}) {
    this.box = box;
    this.title = title;
    this.series = series;
    this.plot = null;
    this.opts = opts;
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(box);
  }

  width() {
    return Math.max(200, Math.floor(this.box.clientWidth || 320));
  }

  make(data) {
    const colors = ["--chart-1", "--chart-2", "--chart-3", "--chart-4"].map(css);
    const scales = { x: { time: true } };
    const axes = [axis(30), Object.assign(axis(52), { scale: this.series[0].scale || "y", values: this.series[0].fmt ? (u, v) => v.map(this.series[0].fmt) : undefined })];
    const right = this.series.find((s) => s.side === 1);
    if (right) {
      axes.push(Object.assign(axis(62), { scale: right.scale, side: 1, grid: { show: false }, values: right.fmt ? (u, v) => v.map(right.fmt) : undefined }));
    }
    for (const s of this.series) if (s.scale) scales[s.scale] = { auto: true, range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.1 : 1] };
    if (!scales.y) scales.y = { auto: true, range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.1 : 1] };
    const opts = {
      width: this.width(), height: this.opts.height || 170,
      cursor: { drag: { x: false, y: false } },
      legend: { show: true, live: true },
      scales,
      axes,
      // Without a cursor on the chart, the legend shows the latest values.
      hooks: { draw: [(u) => latestLegend(u)] },
      series: [{ label: "time", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString([], { hour12: false })) },
        ...this.series.map((s, i) => ({ label: s.label, scale: s.scale || "y", stroke: colors[i % colors.length], width: 1.6, spanGaps: false,
          value: (u, v) => (v == null ? "–" : s.fmt ? s.fmt(v) : num(v)), points: { show: this.opts.points || false } }))],
    };
    this.plot = new window.uPlot(opts, data, this.box);
  }

  set(data) {
    if (!window.uPlot) return;
    if (!this.plot) this.make(data);
    else this.plot.setData(data);
  }

  resize() {
    if (this.plot && Math.abs(this.plot.width - this.width()) > 2) this.plot.setSize({ width: this.width(), height: this.plot.height });
  }

  destroy() {
    this.observer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

const ms = (v) => dur(v);

function latestLegend(u) {
  if (u.cursor.idx !== null && u.cursor.idx !== undefined) return;
  const d = u.data;
  const empty = (i) => d.slice(1).every((s) => s[i] === null || s[i] === undefined);
  let last = d[0].length - 1;
  while (last >= 0 && empty(last)) last--;
  if (last >= 0) u.setLegend({ idx: last }, false);
}

// Traffic draws two charts per proxied service from GET /v1/history.
export class Traffic {
  constructor(root, empty) {
    this.root = root;
    this.empty = empty;
    this.charts = new Map(); // service → {el, rate, errors}
  }

  reset() {
    for (const c of this.charts.values()) {
      c.rate.destroy();
      c.errors.destroy();
      c.el.remove();
    }
    this.charts.clear();
  }

  render(state) {
    const proxies = (state.status && state.status.proxies) || [];
    const doc = state.history.services;
    this.empty.hidden = proxies.length > 0;
    const seen = new Set();
    for (const p of proxies) {
      const name = p.service;
      seen.add(name);
      let c = this.charts.get(name);
      if (!c) {
        const rateBox = h("div", { role: "img" });
        const errBox = h("div", { role: "img" });
        c = { el: h("div", { class: "chart-pair" },
          h("div", { class: "chart" }, h("h3", {}, `${name} · requests per second`), rateBox),
          h("div", { class: "chart" }, h("h3", {}, `${name} · errors and p99 latency`), errBox)) };
        c.rateBox = rateBox;
        c.errBox = errBox;
        c.rate = new Chart(rateBox, "rps", [{ label: "requests/s" }, { label: "retried/s" }, { label: "shed/s" }]);
        c.errors = new Chart(errBox, "errors", [{ label: "error rate", scale: "pct", fmt: pct }, { label: "p99", scale: "s", side: 1, fmt: ms }]);
        this.charts.set(name, c);
        this.root.append(c.el);
      }
      if (!doc) continue;
      const s = (what) => doc.series[`service/${name}/${what}`] || doc.times.map(() => null);
      const rps = s("rps"), err = s("error_rate"), p99 = s("p99_seconds");
      c.rate.set([doc.times, rps, s("retried_rps"), s("shed_rps")]);
      c.errors.set([doc.times, err, p99]);
      setAttr(c.rateBox, "aria-label", `${name}: ${num(latest(rps))} requests per second now, over the last hour`);
      setAttr(c.errBox, "aria-label", `${name}: error rate ${pct(latest(err))}, p99 ${latest(p99) === null ? "unknown" : dur(latest(p99))} now`);
    }
    for (const [name, c] of this.charts) {
      if (!seen.has(name)) {
        c.rate.destroy();
        c.errors.destroy();
        c.el.remove();
        this.charts.delete(name);
      }
    }
  }
}

// TTRTrend draws the time to recover of each drill scenario over its runs.
export class TTRTrend {
  constructor(root) {
    this.root = root;
    this.chart = null;
    this.key = "";
  }

  reset() {
    if (this.chart) this.chart.destroy();
    this.chart = null;
    this.root.replaceChildren();
    this.key = "";
  }

  render(runs) {
    const by = new Map();
    for (const r of runs) {
      const t = Date.parse(r.started);
      const ttr = r.ttr_seconds;
      if (isNaN(t) || ttr === undefined || ttr === null || r.state === "running") continue;
      const k = r.failure_mode || r.scenario || "drill";
      if (!by.has(k)) by.set(k, []);
      by.get(k).push([t / 1000, ttr]);
    }
    if (by.size === 0 || !window.uPlot) {
      this.reset();
      return;
    }
    const names = [...by.keys()].sort().slice(0, 4);
    const tables = names.map((k) => {
      const pts = by.get(k).sort((a, b) => a[0] - b[0]);
      return [pts.map((p) => p[0]), pts.map((p) => p[1])];
    });
    const data = window.uPlot.join(tables);
    const key = names.join(",");
    if (key !== this.key) {
      this.reset();
      this.key = key;
      const box = h("div", { role: "img", "aria-label": "time to recover per drill scenario over its runs" });
      this.root.append(h("div", { class: "chart" }, h("h3", {}, "Time to recover by scenario"), box));
      this.chart = new Chart(box, "ttr", names.map((n) => ({ label: n, fmt: ms })), { points: true });
    }
    this.chart.set(data);
  }
}
