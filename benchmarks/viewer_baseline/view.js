// One orthogonal view of a CtVolume on a canvas: windowing by a lookup table, zoom/pan, orientation letters,
// a millimetre scale bar and the slice position. Screen axes are in LPS mm: axial shows x to the right
// (patient left on the viewer's right) and y downwards (anterior up); coronal x and -z; sagittal y and -z.

const PLANES = {
  // fixed LPS axis; LPS axis shown left-to-right; LPS axis shown top-to-bottom and its sign on screen
  axial: { fixedL: 2, colL: 0, rowL: 1, sign: 1, letters: ["R", "L", "A", "P"], axisName: "z" },
  coronal: { fixedL: 1, colL: 0, rowL: 2, sign: -1, letters: ["R", "L", "S", "I"], axisName: "y" },
  sagittal: { fixedL: 0, colL: 1, rowL: 2, sign: -1, letters: ["A", "P", "S", "I"], axisName: "x" },
};

/** For each LPS axis (x, y, z), the voxel axis (0 i, 1 j, 2 k) that runs most nearly along it. */
export function voxelAxesOf(affine) {
  const used = new Set();
  return [0, 1, 2].map((l) => {
    let best = -1;
    for (let v = 0; v < 3; v++) {
      if (!used.has(v) && (best < 0 || Math.abs(affine[l][v]) > Math.abs(affine[l][best]))) best = v;
    }
    used.add(best);
    return best;
  });
}

/** A packed RGBA (little-endian ABGR) lookup table over all int16 values for a window centre/width. */
export function windowLut(level, width, lut = new Uint32Array(65536)) {
  const lo = level - width / 2;
  const scale = 255 / Math.max(width, 1);
  for (let v = -32768; v < 32768; v++) {
    let g = (v - lo) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g | 0;
    lut[v + 32768] = 0xff000000 | (g << 16) | (g << 8) | g;
  }
  return lut;
}

export class SliceView {
  constructor(canvas, volume, plane, shared) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.vol = volume;
    this.plane = plane;
    const spec = PLANES[plane];
    const axes = voxelAxesOf(volume.affine); // any storage order: the voxel axis along each LPS axis
    // p.fixed: the voxel axis this view slices; p.col / p.row: [voxel axis, LPS axis(, screen sign)]
    this.p = { ...spec, fixed: axes[spec.fixedL], col: [axes[spec.colL], spec.colL], row: [axes[spec.rowL], spec.rowL, spec.sign] };
    this.shared = shared; // {lut, position: [i, j, k]}
    const dims = [volume.ni, volume.nj, volume.nk];
    this.w = dims[this.p.col[0]];
    this.h = dims[this.p.row[0]];
    this.depth = dims[this.p.fixed];
    const strides = [1, volume.ni, volume.ni * volume.nj];
    this.strides = { fixed: strides[this.p.fixed], col: strides[this.p.col[0]], row: strides[this.p.row[0]] };
    this.image = new ImageData(this.w, this.h);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.off = document.createElement("canvas");
    this.off.width = this.w;
    this.off.height = this.h;
    this.offCtx = this.off.getContext("2d");
    // screen mm of image pixel centre (p, q): h = h0 + hs * p, v = v0 + vs * q (axis-aligned affines)
    const a = volume.affine;
    const [cAx, cL] = this.p.col;
    const [rAx, rL, rSign] = this.p.row;
    this.hs = a[cL][cAx];
    this.h0 = a[cL][3];
    this.vs = rSign * a[rL][rAx];
    this.v0 = rSign * a[rL][3];
    this.zoom = 1;
    this.centre = null; // [h, v] mm at the canvas centre
    this.overlays = [];
    this.resize();
    this.fit();
  }

  get index() {
    return this.shared.position[this.p.fixed];
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.cssW = Math.max(1, r.width);
    this.cssH = Math.max(1, r.height);
    this.canvas.width = Math.round(this.cssW * dpr);
    this.canvas.height = Math.round(this.cssH * dpr);
    this.dpr = dpr;
  }

  /** Zoom so the whole slice fits, centred. */
  fit() {
    const wmm = Math.abs(this.hs) * this.w;
    const hmm = Math.abs(this.vs) * this.h;
    this.zoom = Math.min(this.cssW / wmm, this.cssH / hmm) * 0.96;
    this.centre = [this.h0 + this.hs * (this.w - 1) / 2, this.v0 + this.vs * (this.h - 1) / 2];
  }

  // ---- coordinates: client (CSS px relative to canvas) <-> screen mm <-> voxel
  mmToCanvas(h, v) {
    return [(h - this.centre[0]) * this.zoom + this.cssW / 2, (v - this.centre[1]) * this.zoom + this.cssH / 2];
  }

  canvasToMm(x, y) {
    return [(x - this.cssW / 2) / this.zoom + this.centre[0], (y - this.cssH / 2) / this.zoom + this.centre[1]];
  }

  /** Continuous voxel (i, j, k) under a canvas point on the current slice. */
  canvasToVoxel(x, y) {
    const [h, v] = this.canvasToMm(x, y);
    const ijk = [...this.shared.position];
    ijk[this.p.col[0]] = (h - this.h0) / this.hs;
    ijk[this.p.row[0]] = (v - this.v0) / this.vs;
    return ijk;
  }

  /** Canvas point of a voxel's (p, q) in this view. */
  voxelToCanvas(ijk) {
    return this.mmToCanvas(this.h0 + this.hs * ijk[this.p.col[0]], this.v0 + this.vs * ijk[this.p.row[0]]);
  }

  /** LPS [x, y, z] -> screen mm [h, v] of this view. */
  lpsToMm(xyz) {
    return [xyz[this.p.col[1]], this.p.row[2] * xyz[this.p.row[1]]];
  }

  /** Fill the image of the current slice through the shared lookup table (the hot path of a slice change). */
  fill() {
    const data = this.vol.data;
    const lut = this.shared.lut;
    const px = this.pixels;
    const { fixed, col, row } = this.strides;
    const base = this.index * fixed;
    const w = this.w;
    if (col === 1 && row === w) { // contiguous slice (axial of an axially stored volume)
      const len = w * this.h;
      for (let p = 0; p < len; p++) px[p] = lut[data[base + p] + 32768];
    } else {
      for (let q = 0; q < this.h; q++) {
        const start = base + q * row;
        const out = q * w;
        for (let p = 0; p < w; p++) px[out + p] = lut[data[start + p * col] + 32768];
      }
    }
    this.offCtx.putImageData(this.image, 0, 0);
  }

  /** Fill and draw; returns milliseconds spent. */
  render(refill = true) {
    const t0 = performance.now();
    if (refill) this.fill();
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    const d = this.dpr;
    const [ex, ey] = this.mmToCanvas(this.h0 - this.hs / 2, this.v0 - this.vs / 2);
    ctx.setTransform(d * this.zoom * this.hs, 0, 0, d * this.zoom * this.vs, d * ex, d * ey);
    ctx.imageSmoothingEnabled = this.zoom * Math.abs(this.hs) < 2;
    ctx.drawImage(this.off, 0, 0);
    ctx.setTransform(d, 0, 0, d, 0, 0);
    for (const overlay of this.overlays) overlay(ctx, this);
    this.decorate(ctx);
    return performance.now() - t0;
  }

  decorate(ctx) {
    const W = this.cssW;
    const H = this.cssH;
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillStyle = "#ffd34d";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const [l, r, t, b] = this.p.letters;
    ctx.fillText(l, 10, H / 2);
    ctx.fillText(r, W - 10, H / 2);
    ctx.fillText(t, W / 2, 10);
    ctx.fillText(b, W / 2, H - 10);
    // scale bar: a round length near a fifth of the width
    const target = W / 5 / this.zoom;
    const nice = [1, 2, 5, 10, 20, 50, 100, 200, 500].reduce((best, v) => (v <= target ? v : best), 1);
    const len = nice * this.zoom;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(W - 20 - len, H - 24);
    ctx.lineTo(W - 20, H - 24);
    ctx.moveTo(W - 20 - len, H - 28);
    ctx.lineTo(W - 20 - len, H - 20);
    ctx.moveTo(W - 20, H - 28);
    ctx.lineTo(W - 20, H - 20);
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.textAlign = "right";
    ctx.fillText(`${nice} mm`, W - 20, H - 38);
    // slice position
    const pos = this.vol.voxelToLps(...this.shared.position);
    const axis = this.p.fixedL;
    ctx.textAlign = "left";
    ctx.fillText(`${this.plane} ${this.p.axisName} = ${pos[axis].toFixed(1)} mm  (${this.index + 1}/${this.depth})`, 8, H - 12);
  }

  /** Zoom by ``factor`` keeping the canvas point (x, y) fixed. */
  zoomAt(factor, x, y) {
    const before = this.canvasToMm(x, y);
    this.zoom = Math.max(0.2, Math.min(40, this.zoom * factor));
    const after = this.canvasToMm(x, y);
    this.centre = [this.centre[0] + before[0] - after[0], this.centre[1] + before[1] - after[1]];
  }

  panBy(dx, dy) {
    this.centre = [this.centre[0] - dx / this.zoom, this.centre[1] - dy / this.zoom];
  }
}
