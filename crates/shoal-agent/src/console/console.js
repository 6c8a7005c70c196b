// Shoal console: draws the throughput plots from /api/throughput as SVG, and reloads the
// tables of pages whose <main> has data-refresh. Plain browser JavaScript, no libraries,
// served by the agent itself.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 160, PAD = 4;

// 12345 bytes/s -> "12.3 kB/s"; 3.2 requests/s -> "3.2 /s".
function human(v, unit) {
  if (unit === "bytes") {
    const units = ["B/s", "kB/s", "MB/s", "GB/s"];
    let i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return v.toFixed(i === 0 ? 0 : 1) + " " + units[i];
  }
  return v.toFixed(1) + " /s";
}

function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// Draws one series into a figure.chart: a filled line scaled to its own maximum. The
// figure's data-points and data-last attributes say what was drawn.
function draw(fig, samples) {
  const field = fig.dataset.field, unit = fig.dataset.unit;
  const values = samples.map((s) => s[field]);
  const svg = fig.querySelector("svg");
  svg.replaceChildren();
  const max = Math.max(...values, unit === "bytes" ? 1000 : 1);
  const x = (i) => (values.length < 2 ? W : (i * W) / (values.length - 1));
  const y = (v) => H - PAD - ((H - 2 * PAD) * v) / max;
  const pts = values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
  if (values.length > 0) {
    svg.appendChild(el("polygon", { points: `0,${H} ${pts} ${W},${H}`, class: "area" }));
    svg.appendChild(el("polyline", { points: pts, class: "line" }));
  }
  const top = el("text", { x: 4, y: 14, class: "axis" });
  top.textContent = human(max, unit);
  svg.appendChild(top);
  const last = values.length ? values[values.length - 1] : 0;
  fig.dataset.points = String(values.length);
  fig.dataset.last = String(last);
  fig.querySelector(".now").textContent = human(last, unit);
}

async function plots() {
  const figs = document.querySelectorAll("figure.chart");
  if (figs.length === 0) return;
  try {
    const r = await fetch("/api/throughput", { cache: "no-store" });
    const t = await r.json();
    figs.forEach((f) => draw(f, t.samples));
    const cost = document.querySelector("#cost .dollars");
    if (cost && t.cost) {
      cost.textContent = "$" + t.cost.dollars_month.toFixed(2) + " / month";
      cost.dataset.dollars = String(t.cost.dollars_month);
    }
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    document.body.dataset.error = String(e);
  }
}

// Replaces <main> with the same page fetched again, so lag and offsets stay current.
async function refresh() {
  try {
    const r = await fetch(location.pathname, { cache: "no-store" });
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = doc.querySelector("main");
    if (r.ok && fresh) document.querySelector("main").replaceWith(fresh);
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    document.body.dataset.error = String(e);
  }
}

const main = document.querySelector("main");
if (document.querySelector("figure.chart")) {
  plots();
  setInterval(plots, 1000);
} else if (main && main.dataset.refresh) {
  setInterval(refresh, Number(main.dataset.refresh));
}
