// The pages' one chart module: SVG line charts drawn from the API's numbers (no library, no CDN).
const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#0b6e8e", "#b3261e", "#1e7d45", "#9a6700", "#6a3d9a", "#e07b00", "#2b2b2b"];

// An SVG element with attributes, appended to ``parent`` when given (text goes in with textContent).
export function svgEl(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
const el = svgEl;

/**
 * Draw a line chart into `container` (replacing its content).
 * series: [{label, points: [[x, y], ...], color?, dash?, dots? (every point marked, sized by ``sizes``),
 * sizes? ([n per point]: the dot radius grows with n, e.g. scans per reliability bin)}]; options: {title, xDomain,
 * yDomain, xLabel, yLabel, width, height, diagonal (bool), integerX (whole-number x ticks, e.g. epochs),
 * hline (a dashed horizontal reference at this y, e.g. a base rate)}. Returns {svg, setMarker(x), setPoint(x, y,
 * label)} (setPoint: one highlighted point, e.g. the operating point; null hides it).
 */
export function lineChart(container, series, options = {}) {
  const W = options.width || 420, H = options.height || 260;
  const m = { l: 44, r: 12, t: options.title ? 24 : 10, b: 36 };
  // The legend is a band of its own above the plot (wrapped into rows), never drawn over the curves: in the
  // plot's corner it hid the ROC curve's end, the threshold curves at 1 and the learning curves, and a long
  // label ran past the chart's edge. Widths are estimated (10 px text: about 6 px a character).
  const legendTop = m.t;
  const rows = [];
  for (const [i, s] of series.entries()) {
    if (!s.label) continue;
    const w = 16 + 6 * String(s.label).length + 10, row = rows[rows.length - 1];
    const used = row ? row.reduce((a, e) => a + e.w, 0) : 0;
    const entry = { label: String(s.label), color: s.color || PALETTE[i % PALETTE.length], w, x: used };
    if (row && used + w <= W - m.l - m.r) row.push(entry);
    else rows.push([{ ...entry, x: 0 }]);
  }
  m.t += rows.length * 13 + (rows.length ? 4 : 0);
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v));
  const [x0, x1] = options.xDomain || [Math.min(...xs, 0), Math.max(...xs, 1)];
  const [y0, y1] = options.yDomain || [Math.min(...ys, 0), Math.max(...ys, 1)];
  const sx = (x) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const sy = (y) => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img" }, container);
  if (options.title) el("text", { x: m.l, y: 15, "font-size": 12, "font-weight": "bold", fill: "#1d232b" }, svg).textContent = options.title;
  const axes = el("g", { stroke: "#98a2ad", "stroke-width": 1 }, svg);
  el("line", { x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b }, axes);
  el("line", { x1: m.l, y1: m.t, x2: m.l, y2: H - m.b }, axes);
  const xTicks = options.integerX
    ? Array.from(new Set(Array.from({ length: 5 }, (_, i) => Math.round(x0 + ((x1 - x0) * i) / 4))))
    : Array.from({ length: 5 }, (_, i) => x0 + ((x1 - x0) * i) / 4);
  for (const xv of xTicks) {
    el("text", { x: sx(xv), y: H - m.b + 14, "font-size": 10, "text-anchor": "middle", fill: "#5c6773" }, svg).textContent = +xv.toFixed(2);
  }
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4;
    el("text", { x: m.l - 4, y: sy(yv) + 3, "font-size": 10, "text-anchor": "end", fill: "#5c6773" }, svg).textContent = +yv.toFixed(2);
  }
  if (options.xLabel) el("text", { x: (W + m.l) / 2, y: H - 4, "font-size": 11, "text-anchor": "middle", fill: "#1d232b" }, svg).textContent = options.xLabel;
  if (options.yLabel) {
    const t = el("text", { x: 10, y: (H - m.b) / 2, "font-size": 11, "text-anchor": "middle", fill: "#1d232b",
      transform: `rotate(-90 10 ${(H - m.b) / 2})` }, svg);
    t.textContent = options.yLabel;
  }
  if (options.diagonal) el("line", { x1: sx(x0), y1: sy(y0), x2: sx(x1), y2: sy(y1), stroke: "#ccc", "stroke-dasharray": "4 3" }, svg);
  if (options.hline !== undefined && options.hline !== null) {
    el("line", { x1: sx(x0), y1: sy(options.hline), x2: sx(x1), y2: sy(options.hline), stroke: "#ccc",
      "stroke-dasharray": "4 3", class: "hline" }, svg);
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
    if (!pts.length) return;
    const d = pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    const color = s.color || PALETTE[i % PALETTE.length];
    el("path", { d, fill: "none", stroke: color, "stroke-width": 1.8,
      "stroke-dasharray": s.dash || "", "data-series": s.label || "" }, svg);
    // hover values: a small marker per point (thinned to at most ~60 per series unless ``dots``) with a tooltip
    const step = s.dots ? 1 : Math.max(1, Math.ceil(pts.length / 60));
    const maxSize = s.sizes ? Math.max(...s.sizes, 1) : 1;
    pts.forEach((p, j) => {
      if (j % step && j !== pts.length - 1) return;
      const n = s.sizes ? s.sizes[s.points.indexOf(p)] : null;
      const r = n === null || n === undefined ? 2.5 : 2.5 + 4 * Math.sqrt(n / maxSize);
      const dot = el("circle", { cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r, fill: color, class: "pt",
        "data-series": s.label || "" }, svg);
      el("title", {}, dot).textContent = `${s.label || ""}: ${+(+p[0]).toFixed(3)}, ${+(+p[1]).toFixed(3)}` +
        (n === null || n === undefined ? "" : ` (n = ${n})`);
    });
  });
  const legend = el("g", { class: "legend" }, svg);
  rows.forEach((row, r) => {
    const y = legendTop + 9 + r * 13;
    for (const e of row) {
      el("rect", { x: m.l + e.x, y: y - 5, width: 10, height: 3, fill: e.color }, legend);
      el("text", { x: m.l + e.x + 14, y, "font-size": 10, fill: "#1d232b" }, legend).textContent = e.label;
    }
  });
  const marker = el("line", { y1: m.t, y2: H - m.b, stroke: "#1d232b", "stroke-width": 1, "stroke-dasharray": "2 2", visibility: "hidden", class: "marker" }, svg);
  const point = el("circle", { r: 5, fill: "none", stroke: "#1d232b", "stroke-width": 2, visibility: "hidden", class: "point" }, svg);
  const pointTitle = el("title", {}, point);
  return {
    svg,
    setMarker(x) {
      marker.setAttribute("x1", sx(x)); marker.setAttribute("x2", sx(x)); marker.setAttribute("visibility", "visible");
    },
    setPoint(x, y, label = "") {
      const show = x !== null && y !== null && x !== undefined && y !== undefined;
      point.setAttribute("visibility", show ? "visible" : "hidden");
      if (!show) return;
      point.setAttribute("cx", sx(x).toFixed(1)); point.setAttribute("cy", sy(y).toFixed(1));
      pointTitle.textContent = label;
    },
  };
}
