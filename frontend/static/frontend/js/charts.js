// Reusable SVG line charts (no library): lineChart(el, {series: [{name, points: [[x, y], ...], color}], ...}).
const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

function ticks(lo, hi, n = 4) {
  if (hi === lo) return [lo];
  return Array.from({ length: n + 1 }, (_, i) => lo + ((hi - lo) * i) / n);
}

// Draw (or redraw) a chart into `el`; returns the <svg>.
export function lineChart(el, { series, title = "", xLabel = "", yLabel = "", width = 360, height = 220,
                                 yMin, yMax } = {}) {
  el.replaceChildren();
  const m = { l: 46, r: 10, t: title ? 22 : 10, b: 34 };
  const svg = node("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  const y0 = yMin ?? Math.min(...ys, 0), y1 = yMax ?? Math.max(...ys, 1e-9);
  const X = (x) => m.l + ((x - x0) / (x1 - x0 || 1)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((y - y0) / (y1 - y0 || 1)) * (height - m.t - m.b);
  if (title) svg.append(node("text", { x: m.l, y: 15, "font-size": 12, "font-weight": "bold" }, title));
  svg.append(node("line", { x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b, stroke: "#888" }));
  svg.append(node("line", { x1: m.l, y1: m.t, x2: m.l, y2: height - m.b, stroke: "#888" }));
  for (const v of ticks(y0, y1)) {
    svg.append(node("text", { x: m.l - 4, y: Y(v) + 4, "font-size": 10, "text-anchor": "end" }, v.toFixed(2)));
  }
  for (const v of ticks(x0, x1)) {
    svg.append(node("text", { x: X(v), y: height - m.b + 13, "font-size": 10, "text-anchor": "middle" },
                    Number.isInteger(v) ? v : v.toFixed(1)));
  }
  if (xLabel) svg.append(node("text", { x: (width + m.l) / 2, y: height - 4, "font-size": 11, "text-anchor": "middle" }, xLabel));
  if (yLabel) svg.append(node("text", { x: 10, y: m.t + 10, "font-size": 11 }, yLabel));
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const p = s.points.filter((q) => Number.isFinite(q[1]));
    if (!p.length) return;
    svg.append(node("polyline", { points: p.map((q) => `${X(q[0])},${Y(q[1])}`).join(" "), fill: "none",
                                  stroke: color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "4 3" : "" }));
    for (const q of p) svg.append(node("circle", { cx: X(q[0]), cy: Y(q[1]), r: 2.5, fill: color }));
    svg.append(node("text", { x: width - m.r - 4, y: m.t + 12 + 13 * i, "font-size": 10, "text-anchor": "end", fill: color }, s.name));
  });
  el.append(svg);
  return svg;
}
