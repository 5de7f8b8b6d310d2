// The verdict strip beside the axial view: per-slice scores of the latest prediction along z (superior at the
// top, as the coronal and sagittal views), with a z axis in mm, a score axis with the image vote threshold
// (0.5), flagged slices marked, the current slice and its score, and a legend. A click goes to that slice.
import { svgEl } from "../charts.js";

const VOTE = 0.5; // an image is voted abnormal at probability >= 0.5
const COLOUR = { high: "#e5533d", low: "#6fbf73", flag: "#ff4fa3", current: "#ffeb3b" };
const M = { l: 40, r: 8, t: 34, b: 92 }; // margins: z labels left; score axis and legend below

function niceStep(range, target) {
  const raw = range / Math.max(target, 1);
  return [1, 2, 5, 10, 20, 25, 50, 100, 200].find((s) => s >= raw) || 500;
}

export class VerdictStrip {
  /** ``zRange`` [inferior, superior] mm of the volume; ``onPick(z)`` when the strip is clicked. */
  constructor(container, prediction, zRange, onPick) {
    this.container = container;
    this.scores = (prediction.slice_scores || []).map(([z, p]) => [Number(z), Number(p)]).sort((a, b) => a[0] - b[0]);
    this.flagged = (prediction.flagged_slices_mm || []).map(Number);
    this.zlo = Math.min(...zRange);
    this.zhi = Math.max(...zRange);
    this.onPick = onPick;
    this.currentZ = null;
    this.draw();
    new ResizeObserver(() => this.draw()).observe(container);
    container.addEventListener("click", (e) => {
      const r = container.getBoundingClientRect();
      this.onPick(this.zOf(e.clientY - r.top));
    });
  }

  get H() { return Math.max(this.container.clientHeight, M.t + M.b + 40); }

  get W() { return Math.max(this.container.clientWidth, 80); }

  yOf(z) { return M.t + ((this.zhi - z) / Math.max(this.zhi - this.zlo, 1e-6)) * (this.H - M.t - M.b); }

  zOf(y) {
    const f = (y - M.t) / Math.max(this.H - M.t - M.b, 1);
    return this.zhi - Math.max(0, Math.min(1, f)) * (this.zhi - this.zlo);
  }

  xOf(p) { return M.l + p * (this.W - M.l - M.r); }

  /** The score of the slice nearest ``z`` (within half the scores' spacing), or null. */
  scoreAt(z) {
    if (!this.scores.length) return null;
    let best = this.scores[0];
    for (const s of this.scores) if (Math.abs(s[0] - z) < Math.abs(best[0] - z)) best = s;
    const step = this.scores.length > 1 ? (this.scores[this.scores.length - 1][0] - this.scores[0][0]) / (this.scores.length - 1) : 3;
    return Math.abs(best[0] - z) <= Math.abs(step) / 2 + 1e-6 ? best : null;
  }

  draw() {
    const W = this.W;
    const H = this.H;
    this.container.replaceChildren();
    const svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": "per-slice scores of the latest verdict" }, this.container);
    svgEl("rect", { x: 0, y: 0, width: W, height: H, fill: "#111" }, svg);
    const text = (x, y, s, attrs = {}) => {
      const t = svgEl("text", { x, y, "font-size": 10, fill: "#ccc", ...attrs }, svg);
      t.textContent = s;
      return t;
    };
    text(4, 12, "slice score", { "font-weight": "bold", fill: "#eee" });
    this.readout = text(4, 26, "", { fill: COLOUR.current, class: "strip-current" });
    // z axis (mm), superior at the top
    const step = niceStep(this.zhi - this.zlo, (H - M.t - M.b) / 40);
    svgEl("line", { x1: M.l, y1: M.t, x2: M.l, y2: H - M.b, stroke: "#777" }, svg);
    for (let z = Math.ceil(this.zlo / step) * step; z <= this.zhi + 1e-6; z += step) {
      const y = this.yOf(z);
      svgEl("line", { x1: M.l - 3, y1: y, x2: M.l, y2: y, stroke: "#777" }, svg);
      text(M.l - 5, y + 3, `${Math.round(z)}`, { "text-anchor": "end" });
    }
    text(2, H - M.b + 12, "z mm", { fill: "#999" });
    // bars
    const n = Math.max(this.scores.length, 1);
    const bar = Math.max(1.5, Math.min(8, ((H - M.t - M.b) / n) * 0.8));
    const flagged = new Set(this.flagged.map((z) => z.toFixed(2)));
    for (const [z, p] of this.scores) {
      const y = this.yOf(z);
      svgEl("rect", { x: M.l + 1, y: y - bar / 2, width: Math.max(1, this.xOf(p) - M.l - 1), height: bar,
        fill: p >= VOTE ? COLOUR.high : COLOUR.low }, svg);
      if (flagged.has(z.toFixed(2))) {
        svgEl("path", { d: `M${W - 1},${y - 4} L${W - 7},${y} L${W - 1},${y + 4} Z`, fill: COLOUR.flag,
          class: "strip-flag", "data-z": z }, svg);
      }
    }
    // score axis with the vote threshold
    const yAxis = H - M.b;
    svgEl("line", { x1: M.l, y1: yAxis, x2: W - M.r, y2: yAxis, stroke: "#777" }, svg);
    for (const p of [0, VOTE, 1]) {
      svgEl("line", { x1: this.xOf(p), y1: yAxis, x2: this.xOf(p), y2: yAxis + 3, stroke: "#777" }, svg);
      text(this.xOf(p), yAxis + 13, p === VOTE ? "0.5" : String(p), { "text-anchor": "middle" });
    }
    svgEl("line", { x1: this.xOf(VOTE), y1: M.t, x2: this.xOf(VOTE), y2: yAxis, stroke: "#aaa", "stroke-dasharray": "2 3" }, svg);
    // legend
    const legend = [[COLOUR.high, "rect", "image ≥ 0.5"], [COLOUR.low, "rect", "image < 0.5"],
      [COLOUR.flag, "flag", "flagged slice"], [COLOUR.current, "line", "this slice"]];
    legend.forEach(([colour, kind, label], i) => {
      const y = yAxis + 28 + i * 14;
      if (kind === "rect") svgEl("rect", { x: 4, y: y - 7, width: 10, height: 7, fill: colour }, svg);
      else if (kind === "flag") svgEl("path", { d: `M14,${y - 8} L6,${y - 4} L14,${y} Z`, fill: colour }, svg);
      else svgEl("line", { x1: 3, y1: y - 4, x2: 15, y2: y - 4, stroke: colour, "stroke-width": 2 }, svg);
      text(19, y, label, { class: "strip-legend" });
    });
    this.marker = svgEl("line", { x1: M.l, x2: W - M.r, stroke: COLOUR.current, "stroke-width": 1.5, y1: -10, y2: -10 }, svg);
    if (this.currentZ !== null) this.setCurrent(this.currentZ);
  }

  /** Move the current-slice line to ``z`` and show that slice's score. */
  setCurrent(z) {
    this.currentZ = z;
    const y = this.yOf(z);
    this.marker.setAttribute("y1", y);
    this.marker.setAttribute("y2", y);
    const s = this.scoreAt(z);
    this.readout.textContent = s ? `here ${s[1].toFixed(2)}` : "here —";
    this.container.dataset.currentScore = s ? String(s[1]) : "";
  }
}
