// The verdict strip beside the axial view: per-slice scores of the latest prediction along z (superior at the
// top, as the coronal and sagittal views), with a z axis in mm, a score axis with the line images are flagged
// from, flagged slices marked, the current slice and its score, and a legend. A click goes to that slice.
// A per-gland verdict scores each gland's images apart (side_details[s].slice_scores, at the same z): the strip
// keeps them apart, R in the upper half of each slice's bar and L in the lower, reads out both ("here R 0.12 ·
// L 0.91"), and draws the line at the operating value, where such a verdict flags an image
// (inference/ml/verdict.py: gland_verdict). A joined verdict has one score per slice and votes at 0.5.
import { svgEl } from "../charts.js";

const VOTE = 0.5; // a joined verdict's image is voted abnormal at probability >= 0.5
const COLOUR = { high: "#e5533d", low: "#6fbf73", flag: "#ff4fa3", current: "#ffeb3b" };
const M = { l: 40, r: 8, t: 34, b: 106 }; // margins: z labels left; score axis and legend below

const byZ = (scores) => (scores || []).map(([z, p]) => [Number(z), Number(p)]).sort((a, b) => a[0] - b[0]);

/** What the strip draws of a verdict: ``{series: [{side, scores: [[z, p], ...] by z, flagged: [z]}], threshold,
 * perGland}``: one series per judged gland for a per-gland verdict (its images flagged from the operating
 * value), else the scan's own scores (flagged from the 0.5 image vote). */
export function stripSeries(prediction) {
  const details = prediction.side_details || {};
  const sides = ["R", "L"].filter((s) => details[s] && Array.isArray(details[s].slice_scores) && details[s].slice_scores.length);
  if (sides.length && prediction.operating_value !== null && prediction.operating_value !== undefined) {
    return { perGland: true, threshold: Number(prediction.operating_value),
      series: sides.map((s) => ({ side: s, scores: byZ(details[s].slice_scores), flagged: (details[s].flagged_slices_mm || []).map(Number) })) };
  }
  return { perGland: false, threshold: VOTE,
    series: [{ side: null, scores: byZ(prediction.slice_scores), flagged: (prediction.flagged_slices_mm || []).map(Number) }] };
}

/** The score of the slice nearest ``z`` in ``scores`` (by z; within half their spacing), or null. */
export function scoreNear(scores, z) {
  if (!scores.length) return null;
  let best = scores[0];
  for (const s of scores) if (Math.abs(s[0] - z) < Math.abs(best[0] - z)) best = s;
  const step = scores.length > 1 ? (scores[scores.length - 1][0] - scores[0][0]) / (scores.length - 1) : 3;
  return Math.abs(best[0] - z) <= Math.abs(step) / 2 + 1e-6 ? best : null;
}

function niceStep(range, target) {
  const raw = range / Math.max(target, 1);
  return [1, 2, 5, 10, 20, 25, 50, 100, 200].find((s) => s >= raw) || 500;
}

export class VerdictStrip {
  /** ``zRange`` [inferior, superior] mm of the volume; ``onPick(z)`` when the strip is clicked. */
  constructor(container, prediction, zRange, onPick) {
    this.container = container;
    Object.assign(this, stripSeries(prediction)); // series, threshold, perGland
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

  /** Each series' score at the slice nearest ``z``: ``[{side, score: [z, p] | null}]``. */
  scoresAt(z) { return this.series.map((s) => ({ side: s.side, score: scoreNear(s.scores, z) })); }

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
    // bars: one per slice, split between the glands of a per-gland verdict (R upper half, L lower)
    const n = Math.max(...this.series.map((s) => s.scores.length), 1);
    const bar = Math.max(1.5 * this.series.length, Math.min(8, ((H - M.t - M.b) / n) * 0.8));
    const part = bar / this.series.length;
    const cut = this.threshold;
    this.series.forEach((s, i) => {
      const flagged = new Set(s.flagged.map((z) => z.toFixed(2)));
      for (const [z, p] of s.scores) {
        const y = this.yOf(z) - bar / 2 + i * part;
        svgEl("rect", { x: M.l + 1, y, width: Math.max(1, this.xOf(p) - M.l - 1), height: part,
          fill: p >= cut ? COLOUR.high : COLOUR.low, class: "strip-bar", "data-side": s.side || "", "data-z": z, "data-p": p }, svg);
        if (flagged.has(z.toFixed(2))) {
          const yc = y + part / 2;
          svgEl("path", { d: `M${W - 1},${yc - 4} L${W - 7},${yc} L${W - 1},${yc + 4} Z`, fill: COLOUR.flag,
            class: "strip-flag", "data-z": z, "data-side": s.side || "" }, svg);
        }
      }
    });
    // score axis with the line images are flagged from
    const yAxis = H - M.b;
    const cutText = this.perGland ? cut.toFixed(2) : "0.5";
    svgEl("line", { x1: M.l, y1: yAxis, x2: W - M.r, y2: yAxis, stroke: "#777" }, svg);
    for (const p of [0, cut, 1]) {
      svgEl("line", { x1: this.xOf(p), y1: yAxis, x2: this.xOf(p), y2: yAxis + 3, stroke: "#777" }, svg);
      // an end's label where the cut's would touch it is left out: "0.79" beside "1" on a narrow strip read "0.791"
      const label = p === cut ? cutText : String(p);
      const room = (cutText.length + label.length) * 3 + 6;  // half of each label (10 px text: ~6 px a character)
      if (p !== cut && Math.abs(this.xOf(p) - this.xOf(cut)) < room) continue;
      text(this.xOf(p), yAxis + 13, label, { "text-anchor": "middle", class: "strip-axis" });
    }
    svgEl("line", { x1: this.xOf(cut), y1: M.t, x2: this.xOf(cut), y2: yAxis, stroke: "#aaa", "stroke-dasharray": "2 3",
      class: "strip-threshold", "data-value": cut }, svg);
    // legend
    const legend = [[COLOUR.high, "rect", `image ≥ ${cutText}`], [COLOUR.low, "rect", `image < ${cutText}`],
      [COLOUR.flag, "flag", "flagged slice"], [COLOUR.current, "line", "this slice"]];
    if (this.series.length > 1) legend.push(["#ccc", "halves", "R above, L below"]);
    legend.forEach(([colour, kind, label], i) => {
      const y = yAxis + 28 + i * 14;
      if (kind === "rect") svgEl("rect", { x: 4, y: y - 7, width: 10, height: 7, fill: colour }, svg);
      else if (kind === "halves") {
        svgEl("rect", { x: 4, y: y - 8, width: 10, height: 3.5, fill: "#ccc" }, svg);
        svgEl("rect", { x: 4, y: y - 3.5, width: 10, height: 3.5, fill: "#888" }, svg);
      } else if (kind === "flag") svgEl("path", { d: `M14,${y - 8} L6,${y - 4} L14,${y} Z`, fill: colour }, svg);
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
    const at = this.scoresAt(z);
    const fmt = (s) => (s.score ? s.score[1].toFixed(2) : "—");
    this.readout.textContent = this.perGland ? `here ${at.map((s) => `${s.side} ${fmt(s)}`).join(" · ")}` : `here ${fmt(at[0])}`;
    // the highest score here (the one a verdict reads), and each gland's
    const here = at.filter((s) => s.score).map((s) => s.score[1]);
    this.container.dataset.currentScore = here.length ? String(Math.max(...here)) : "";
    for (const s of at) if (s.side) this.container.dataset[`currentScore${s.side}`] = s.score ? String(s.score[1]) : "";
  }
}
