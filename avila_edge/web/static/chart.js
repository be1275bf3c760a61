// A small SVG line chart for one point's history: a min/max band and the mean from the bucketed
// history API, and live points appended as readings arrive. No dependencies; text goes in as textContent.

const SVG = "http://www.w3.org/2000/svg";
const MIN_WIDTH = 300;
const PAD = { left: 48, right: 10, top: 10, bottom: 24 };
const MAX_LIVE = 2000;

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmtTime(ns, spanNs) {
  const d = new Date(ns / 1e6);
  const opts = spanNs > 2 * 86400e9 ? { month: "2-digit", day: "2-digit", hour: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return d.toLocaleString(undefined, opts);
}

function fmtValue(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-2)) return v.toExponential(1);
  return String(Math.round(v * 100) / 100);
}

export class LineChart {
  /** @param {HTMLElement} container */
  constructor(container, { unit = "" } = {}) {
    this.unit = unit;
    this.buckets = [];
    this.live = [];
    this.fromNs = 0;
    this.toNs = 0;
    this.container = container;
    this.svg = el("svg", { class: "chart", role: "img", "data-test": "history-chart" });
    container.replaceChildren(this.svg);
    // drawn in CSS pixels at the container's width, so labels keep their size on a phone and a desktop
    this.width = 0;
    if (typeof ResizeObserver !== "undefined") {
      this.resize = new ResizeObserver(() => {
        if (Math.round(container.clientWidth) !== this.width) this.render();
      });
      this.resize.observe(container);
    }
  }

  /** Buckets from `GET /api/points/{p}/history?buckets=N`: [{start_ns,count,min,max,mean}]. */
  setBuckets(buckets, fromNs, toNs) {
    this.buckets = buckets.filter((b) => b.count > 0 && Number.isFinite(b.mean));
    this.live = [];
    this.fromNs = fromNs;
    this.toNs = toNs;
    this.render();
  }

  /** A live reading (gateway time in ns, numeric value). The window slides to keep it in view. */
  addPoint(tsNs, value) {
    if (typeof value === "boolean") value = value ? 1 : 0;
    if (typeof value !== "number" || !Number.isFinite(value)) return;
    const last = this.live[this.live.length - 1];
    if (last && last[0] >= tsNs) return;
    this.live.push([tsNs, value]);
    if (this.live.length > MAX_LIVE) this.live.shift();
    if (tsNs > this.toNs) {
      const span = this.toNs - this.fromNs;
      this.toNs = tsNs;
      this.fromNs = tsNs - span;
    }
    this.render();
  }

  close() {
    if (this.resize) this.resize.disconnect();
  }

  get liveCount() {
    return this.live.length;
  }

  render() {
    const svg = this.svg;
    const WIDTH = Math.max(MIN_WIDTH, Math.round(this.container.clientWidth) || 640);
    const HEIGHT = WIDTH < 500 ? 180 : 240;
    this.width = Math.round(this.container.clientWidth);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute("width", String(WIDTH));
    svg.setAttribute("height", String(HEIGHT));
    svg.replaceChildren();
    const span = Math.max(1, this.toNs - this.fromNs);
    const inView = (t) => t >= this.fromNs && t <= this.toNs;
    const buckets = this.buckets.filter((b) => inView(b.start_ns));
    const live = this.live.filter(([t]) => inView(t));
    const values = [];
    for (const b of buckets) values.push(b.min, b.max);
    for (const [, v] of live) values.push(v);
    svg.setAttribute("data-buckets", String(buckets.length));
    svg.setAttribute("data-live", String(live.length));
    if (values.length === 0) {
      const t = el("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-empty" });
      t.textContent = "no data in this range";
      svg.append(t);
      return;
    }
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    const pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
    const w = WIDTH - PAD.left - PAD.right;
    const h = HEIGHT - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + ((t - this.fromNs) / span) * w;
    const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * h;

    // axes and grid
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      svg.append(el("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "chart-grid" }));
      const label = el("text", { x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end", class: "chart-label" });
      label.textContent = fmtValue(v);
      svg.append(label);
    }
    for (let i = 0; i <= 3; i++) {
      const t = this.fromNs + (span * i) / 3;
      const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
      const label = el("text", { x: x(t), y: HEIGHT - 6, "text-anchor": anchor, class: "chart-label" });
      label.textContent = fmtTime(t, span);
      svg.append(label);
    }
    if (this.unit) {
      const u = el("text", { x: PAD.left + 4, y: PAD.top + 12, class: "chart-label" });
      u.textContent = this.unit;
      svg.append(u);
    }

    // the min/max band and the mean line of the buckets
    if (buckets.length > 0) {
      const upper = buckets.map((b) => `${x(b.start_ns).toFixed(1)},${y(b.max).toFixed(1)}`);
      const lower = buckets.map((b) => `${x(b.start_ns).toFixed(1)},${y(b.min).toFixed(1)}`).reverse();
      svg.append(el("polygon", { points: upper.concat(lower).join(" "), class: "chart-band", "data-test": "chart-band" }));
      const mean = buckets.map((b) => `${x(b.start_ns).toFixed(1)},${y(b.mean).toFixed(1)}`).join(" ");
      svg.append(el("polyline", { points: mean, class: "chart-mean", "data-test": "chart-mean" }));
    }
    // live readings after the history
    if (live.length > 0) {
      const pts = live.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      svg.append(el("polyline", { points: pts, class: "chart-live", "data-test": "chart-live" }));
      const [lt, lv] = live[live.length - 1];
      svg.append(el("circle", { cx: x(lt), cy: y(lv), r: 3, class: "chart-live-dot" }));
    }
  }
}
