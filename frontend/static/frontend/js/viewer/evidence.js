// Evidence over the axial view: the class-activation maps of a verdict's flagged images (Prediction.evidence,
// inference/ml/evidence.py), each a grid of values in [0, 1] on an axial plane with cell [r][c] at LPS
// (x0 + c*dx, y0 + r*dy, z) mm. A map is drawn on the axial slice nearest its z; its placement on screen comes
// from the view's one transform (ViewTransform.lpsToScreen of three cell centres), so it follows zoom, pan,
// canvas size and pixel ratio exactly as the boxes do.

/** Red (low) to yellow (high), alpha = value: the map as a small RGBA canvas, one pixel per cell. */
function mapCanvas(heat) {
  const [rows, cols] = heat.shape;
  const canvas = document.createElement("canvas");
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cols, rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = Math.max(0, Math.min(1, Number(heat.values[r][c])));
      const o = 4 * (r * cols + c);
      img.data[o] = 255;
      img.data[o + 1] = Math.round(255 * Math.max(0, 2 * v - 1));
      img.data[o + 2] = 0;
      img.data[o + 3] = Math.round(255 * v);
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

export class EvidenceLayer {
  /** ``evidence``: the verdict's maps (highest first); shown at ``opacity`` (0..1) while ``on``. */
  constructor(evidence, { on = true, opacity = 0.5 } = {}) {
    this.maps = (evidence || []).filter((e) => e && e.heat && e.heat.values).map((e) => ({ ...e, canvas: mapCanvas(e.heat) }));
    this.on = on;
    this.opacity = opacity;
    this.drawn = []; // what the last axial draw placed: [{side, z_mm, rect}] (tests, debugging)
  }

  /** The maps on this view's current slice (axial only: each map's plane is axial). */
  mapsOn(view) {
    if (view.plane !== "axial") return [];
    return this.maps.filter((m) => view.t.sliceOf([m.heat.x0, m.heat.y0, m.heat.z]) === view.index);
  }

  /** Screen corners of map ``m`` on ``view``: origin (cell 0, 0 centre) and the screen steps of one column and
   * one row, all through the view's transform. */
  placement(view, m) {
    const h = m.heat;
    const o = view.t.lpsToScreen([h.x0, h.y0, h.z]);
    const c1 = view.t.lpsToScreen([h.x0 + h.dx, h.y0, h.z]);
    const r1 = view.t.lpsToScreen([h.x0, h.y0 + h.dy, h.z]);
    return { o, ex: [c1[0] - o[0], c1[1] - o[1]], ey: [r1[0] - o[0], r1[1] - o[1]] };
  }

  /** Draw the maps of this view's slice (an overlay: ``ctx`` in CSS px). */
  draw(ctx, view) {
    if (view.plane === "axial") this.drawn = [];
    if (!this.on || this.opacity <= 0) return;
    for (const m of this.mapsOn(view)) {
      const { o, ex, ey } = this.placement(view, m);
      ctx.save();
      ctx.globalAlpha = this.opacity;
      ctx.imageSmoothingEnabled = true;
      ctx.transform(ex[0], ex[1], ey[0], ey[1], o[0], o[1]); // cell (c, r) -> o + c*ex + r*ey
      ctx.drawImage(m.canvas, -0.5, -0.5); // pixel c covers [c - 0.5, c + 0.5]: its centre on the cell centre
      ctx.restore();
      const [rows, cols] = m.heat.shape;
      const corners = [[-0.5, -0.5], [cols - 0.5, rows - 0.5]].map(([c, r]) => [o[0] + c * ex[0] + r * ey[0], o[1] + c * ex[1] + r * ey[1]]);
      this.drawn.push({ side: m.side, z_mm: m.z_mm, rect: { x1: Math.min(corners[0][0], corners[1][0]),
        y1: Math.min(corners[0][1], corners[1][1]), x2: Math.max(corners[0][0], corners[1][0]),
        y2: Math.max(corners[0][1], corners[1][1]) }, peak: view.t.lpsToScreen(m.peak_lps) });
    }
  }
}
