// Geometry of the viewer: the one place in the browser where voxel indices, patient LPS millimetres and screen
// pixels are converted. It mirrors inference/ml/geometry.py (the Python side's one place):
//   - a volume is indexed [k, j, i]; its affine (4x4, rows x, y, z) maps voxel (i, j, k) to LPS mm;
//   - boxes are axis-aligned in LPS: lps_min / lps_max [x, y, z] with min <= max.
// A view shows the volume's voxel grid: image pixel (p, q) is the voxel along the view's column and row axes.
// Screen axes follow radiological convention: axial shows patient right on the viewer's left (x grows to the
// right) and anterior at the top (y grows downwards); coronal x and superior up; sagittal y (anterior left) and
// superior up. On screen every image pixel is spacing mm wide and tall times one zoom (CSS px per mm), so a
// millimetre square is drawn square at any canvas size and device pixel ratio.
// "Screen" coordinates are CSS pixels from the top-left corner of the canvas' content box.

/** Voxel (i, j, k) -> LPS [x, y, z] mm. */
export function voxelToLps(affine, ijk) {
  const a = affine;
  return [0, 1, 2].map((r) => a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3]);
}

/** LPS [x, y, z] mm -> continuous voxel (i, j, k), with ``inverse = invertAffine(affine)``. */
export function lpsToVoxel(inverse, xyz) {
  const b = inverse;
  return [0, 1, 2].map((r) => b[r][0] * xyz[0] + b[r][1] * xyz[1] + b[r][2] * xyz[2] + b[r][3]);
}

/** The inverse of a 4x4 affine with a 3x3 linear part (rows 0..2 returned, as the affine is given). */
export function invertAffine(a) {
  const [[m00, m01, m02], [m10, m11, m12], [m20, m21, m22]] = a;
  const det = m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20) + m02 * (m10 * m21 - m11 * m20);
  const inv = [
    [(m11 * m22 - m12 * m21) / det, (m02 * m21 - m01 * m22) / det, (m01 * m12 - m02 * m11) / det],
    [(m12 * m20 - m10 * m22) / det, (m00 * m22 - m02 * m20) / det, (m02 * m10 - m00 * m12) / det],
    [(m10 * m21 - m11 * m20) / det, (m01 * m20 - m00 * m21) / det, (m00 * m11 - m01 * m10) / det],
  ];
  const t = [a[0][3], a[1][3], a[2][3]];
  return inv.map((row) => [...row, -(row[0] * t[0] + row[1] * t[1] + row[2] * t[2])]);
}

/** Voxel spacing [i, j, k] in mm (the norms of the affine's columns). */
export function spacingOf(affine) {
  return [0, 1, 2].map((c) => Math.hypot(affine[0][c], affine[1][c], affine[2][c]));
}

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

/** Distance in mm between two LPS points. */
export function distanceMm(a, b) {
  return Math.hypot(b[0] - a[0], b[1] - a[1], b[2] - a[2]);
}

export const PLANES = {
  // fixedL: the LPS axis across the view; colL / rowL: the LPS axes shown left-to-right / top-to-bottom;
  // rowSign: +1 when the row axis grows downwards on screen, -1 when it grows upwards (z: superior up);
  // listSign: the way along fixedL a PACS lists the view's images (axial head to feet: -z; coronal front to
  // back: +y; sagittal right to left: +x), which "next image" and the image numbers follow
  axial: { fixedL: 2, colL: 0, rowL: 1, rowSign: 1, listSign: -1, letters: ["R", "L", "A", "P"], axisName: "z" },
  coronal: { fixedL: 1, colL: 0, rowL: 2, rowSign: -1, listSign: 1, letters: ["R", "L", "S", "I"], axisName: "y" },
  sagittal: { fixedL: 0, colL: 1, rowL: 2, rowSign: -1, listSign: 1, letters: ["A", "P", "S", "I"], axisName: "x" },
};

/**
 * The transform of one view: voxel grid <-> plane millimetres (h, v) <-> screen CSS pixels, with the view's
 * zoom (CSS px per mm), centre (plane mm at the canvas centre) and canvas size. Every drawing call and every
 * pointer event of the viewer goes through one of these.
 */
export class ViewTransform {
  constructor(affine, shapeKji, plane) {
    const spec = PLANES[plane];
    this.plane = plane;
    this.spec = spec;
    this.affine = affine;
    this.inverse = invertAffine(affine);
    const axes = voxelAxesOf(affine); // any storage order: the voxel axis along each LPS axis
    const dims = [shapeKji[2], shapeKji[1], shapeKji[0]]; // [ni, nj, nk]
    const spacing = spacingOf(affine);
    this.fixed = axes[spec.fixedL]; // the voxel axis this view slices
    this.colAxis = axes[spec.colL]; // the voxel axis shown left-to-right (image column p)
    this.rowAxis = axes[spec.rowL]; // the voxel axis shown top-to-bottom (image row q)
    this.w = dims[this.colAxis];
    this.h = dims[this.rowAxis];
    this.depth = dims[this.fixed];
    // plane mm of image pixel centre (p, q): h = hs * p, v = vs * q; |hs|, |vs| are the voxel spacings, the
    // signs put the LPS axis the right way round on screen whatever the storage direction
    this.hs = Math.sign(affine[spec.colL][this.colAxis] || 1) * spacing[this.colAxis];
    this.vs = spec.rowSign * Math.sign(affine[spec.rowL][this.rowAxis] || 1) * spacing[this.rowAxis];
    this.cssW = 1;
    this.cssH = 1;
    this.deviceW = 1;
    this.deviceH = 1;
    this.zoom = 1;
    this.centre = [0, 0];
    this.fitted = true;
  }

  /** The canvas' displayed size (CSS px) and its backing store (device px); refits unless zoomed or panned. */
  setSize(cssW, cssH, deviceW, deviceH) {
    this.cssW = Math.max(1, cssW);
    this.cssH = Math.max(1, cssH);
    this.deviceW = Math.max(1, deviceW);
    this.deviceH = Math.max(1, deviceH);
    if (this.fitted) this.fit();
  }

  /** Device pixels per CSS pixel along x and y (equal up to the rounding of the backing store). */
  get deviceScale() {
    return [this.deviceW / this.cssW, this.deviceH / this.cssH];
  }

  /** Zoom so the whole slice fits, centred. */
  fit() {
    const wmm = Math.abs(this.hs) * this.w;
    const hmm = Math.abs(this.vs) * this.h;
    this.zoom = Math.min(this.cssW / wmm, this.cssH / hmm) * 0.96;
    this.centre = [(this.hs * (this.w - 1)) / 2, (this.vs * (this.h - 1)) / 2];
    this.fitted = true;
  }

  /** Zoom by ``factor`` keeping screen point (x, y) fixed. */
  zoomAt(factor, x, y) {
    const before = this.screenToPlane(x, y);
    this.zoom = Math.max(0.2, Math.min(60, this.zoom * factor));
    const after = this.screenToPlane(x, y);
    this.centre = [this.centre[0] + before[0] - after[0], this.centre[1] + before[1] - after[1]];
    this.fitted = false;
  }

  panBy(dx, dy) {
    this.centre = [this.centre[0] - dx / this.zoom, this.centre[1] - dy / this.zoom];
    this.fitted = false;
  }

  // ---- plane mm <-> screen
  planeToScreen(h, v) {
    return [(h - this.centre[0]) * this.zoom + this.cssW / 2, (v - this.centre[1]) * this.zoom + this.cssH / 2];
  }

  screenToPlane(x, y) {
    return [(x - this.cssW / 2) / this.zoom + this.centre[0], (y - this.cssH / 2) / this.zoom + this.centre[1]];
  }

  // ---- voxel <-> screen
  /** Screen point of voxel (i, j, k) projected on this view (its column and row indices). */
  voxelToScreen(ijk) {
    return this.planeToScreen(this.hs * ijk[this.colAxis], this.vs * ijk[this.rowAxis]);
  }

  /** Continuous voxel (i, j, k) under screen point (x, y) on slice ``index`` of this view. */
  screenToVoxel(x, y, index) {
    const [h, v] = this.screenToPlane(x, y);
    const ijk = [0, 0, 0];
    ijk[this.fixed] = index;
    ijk[this.colAxis] = h / this.hs;
    ijk[this.rowAxis] = v / this.vs;
    return ijk;
  }

  // ---- LPS <-> screen
  /** Screen point of an LPS point (projected along the view's axis). */
  lpsToScreen(xyz) {
    return this.voxelToScreen(lpsToVoxel(this.inverse, xyz));
  }

  /** LPS point under screen point (x, y) on slice ``index`` of this view. */
  screenToLps(x, y, index) {
    return voxelToLps(this.affine, this.screenToVoxel(x, y, index));
  }

  /** LPS position of slice ``index`` along the view's own axis (mm). */
  sliceMm(index) {
    const ijk = [0, 0, 0];
    ijk[this.fixed] = index;
    return voxelToLps(this.affine, ijk)[this.spec.fixedL];
  }

  /** The index step (+1 or -1) of the next image in the order a PACS lists this plane (PLANES listSign), from
   * the slices' own mm, so any storage direction reads the same. */
  get nextStep() {
    const towards = this.sliceMm(Math.min(1, this.depth - 1)) - this.sliceMm(0); // mm per index along the axis
    return (towards >= 0 ? 1 : -1) * this.spec.listSign;
  }

  /** The 1-based number of slice ``index`` in that order (1: the first image, e.g. the most superior axial one). */
  imageNumber(index) {
    return this.nextStep > 0 ? index + 1 : this.depth - index;
  }

  /** The nearest slice index to an LPS point, clamped to the volume. */
  sliceOf(xyz) {
    const k = Math.round(lpsToVoxel(this.inverse, xyz)[this.fixed]);
    return Math.max(0, Math.min(this.depth - 1, k));
  }

  // ---- pointer events
  /** Screen point (CSS px in the canvas) of a mouse or pointer event. */
  eventToScreen(event, canvas) {
    const r = canvas.getBoundingClientRect();
    return [(event.clientX - r.left) * (this.cssW / (r.width || 1)), (event.clientY - r.top) * (this.cssH / (r.height || 1))];
  }

  // ---- boxes
  /** The screen rectangle {x1, y1, x2, y2} of an LPS box on this view. */
  boxRect(box) {
    let x1 = Infinity; let y1 = Infinity; let x2 = -Infinity; let y2 = -Infinity;
    for (const x of [box.lps_min[0], box.lps_max[0]]) {
      for (const y of [box.lps_min[1], box.lps_max[1]]) {
        for (const z of [box.lps_min[2], box.lps_max[2]]) {
          const [sx, sy] = this.lpsToScreen([x, y, z]);
          x1 = Math.min(x1, sx); x2 = Math.max(x2, sx); y1 = Math.min(y1, sy); y2 = Math.max(y2, sy);
        }
      }
    }
    return { x1, y1, x2, y2 };
  }

  /**
   * The LPS box whose in-plane extent is the screen rectangle ``r`` on slice ``index`` (its two corners taken
   * to LPS), keeping ``template``'s extent along the view's own axis. Returns [lps_min, lps_max].
   */
  boxFromRect(template, r, index) {
    const a = this.screenToLps(r.x1, r.y1, index);
    const b = this.screenToLps(r.x2, r.y2, index);
    const lo = [...template.lps_min];
    const hi = [...template.lps_max];
    for (const axis of [this.spec.colL, this.spec.rowL]) {
      lo[axis] = Math.min(a[axis], b[axis]);
      hi[axis] = Math.max(a[axis], b[axis]);
    }
    return [lo, hi];
  }

  /** Whether slice ``index`` of this view passes through the LPS box (voxel centres, with a small tolerance). */
  sliceInBox(box, index) {
    const pos = this.sliceMm(index);
    const axis = this.spec.fixedL;
    return pos >= box.lps_min[axis] - 1e-6 && pos <= box.lps_max[axis] + 1e-6;
  }

  /** The canvas transform (device px) drawing image pixel (p, q) of the slice as a spacing x spacing mm cell. */
  imageMatrix() {
    const [sx, sy] = this.deviceScale;
    const [ex, ey] = this.planeToScreen(-this.hs / 2, -this.vs / 2); // the outer corner of pixel (0, 0)
    return [sx * this.zoom * this.hs, 0, 0, sy * this.zoom * this.vs, sx * ex, sy * ey];
  }

  /** What a test or a debugger needs to recompute the mapping independently. */
  state() {
    return { plane: this.plane, zoom: this.zoom, centre: [...this.centre], cssW: this.cssW, cssH: this.cssH,
      deviceW: this.deviceW, deviceH: this.deviceH, hs: this.hs, vs: this.vs, fixed: this.fixed,
      colAxis: this.colAxis, rowAxis: this.rowAxis };
  }
}
