// dom.js: building elements without innerHTML (every string from medic is
// text, never markup) and formatting figures for people.

// h creates an element: h("td", {class: "num", title: "x"}, "text", child…).
// Attributes starting with "on" are listeners; null/false attributes are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(safe(String(c))));
  }
}

// safe shows control characters and bidirectional overrides (from request
// paths, process output, event reasons) as escapes, as the CLI does
// (internal/safetext): they must not reorder or hide what the page shows.
const unsafeChars = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
export function safe(s) {
  return s.replace(unsafeChars, (ch) => {
    const n = ch.charCodeAt(0);
    return n < 0x100 ? "\\x" + n.toString(16).padStart(2, "0") : "\\u" + n.toString(16).padStart(4, "0");
  });
}

// replace swaps el's children for the given ones.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// setText updates a node's text only when it changed (no layout work otherwise).
export function setText(el, text) {
  text = String(text ?? "");
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  value = String(value ?? "");
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

const units = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n) {
  if (!n) return "–";
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

// dur renders seconds as "3s", "4m 10s", "2h 5m", "3d 4h".
export function dur(s) {
  if (s === null || s === undefined || !isFinite(s) || s < 0) return "–";
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1).replace(/\.0$/, "") : Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${m % 60}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

// ago renders a time as "12s ago" relative to now (ms), or "–".
export function ago(t, now = Date.now()) {
  const ms = Date.parse(t);
  if (!t || isNaN(ms) || ms <= 0) return "–";
  return dur(Math.max(0, (now - ms) / 1000)) + " ago";
}

export function clock(t) {
  const d = new Date(t);
  if (isNaN(d)) return "–";
  return d.toLocaleTimeString([], { hour12: false });
}

export function stamp(t) {
  const d = new Date(t);
  if (isNaN(d)) return "–";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function num(x, digits = 1) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString();
  return x.toFixed(digits).replace(/\.0+$/, "");
}

export function pct(x) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  if (x === 0) return "0%";
  if (x < 0.001) return "<0.1%";
  return (x * 100).toFixed(x < 0.1 ? 1 : 0) + "%";
}

// sparkline returns (or updates) an inline SVG polyline of values (nulls are
// gaps), scaled to its own min..max. It is decoration: the number beside it
// is what a screen reader gets.
const SVG = "http://www.w3.org/2000/svg";
export function sparkline(svg, values, w = 80, hgt = 20) {
  if (!svg) {
    svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.append(document.createElementNS(SVG, "path"));
  }
  const vals = (values || []).filter((v) => v !== null && v !== undefined);
  let d = "";
  if (vals.length > 1) {
    const lo = Math.min(...vals), hi = Math.max(...vals);
    const span = hi - lo || 1;
    const n = values.length;
    let pen = false;
    values.forEach((v, i) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      const x = (i / (n - 1)) * w;
      const y = hgt - 1 - ((v - lo) / span) * (hgt - 2);
      d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      pen = true;
    });
  }
  const path = svg.firstChild;
  if (path.getAttribute("d") !== d) path.setAttribute("d", d);
  return svg;
}
