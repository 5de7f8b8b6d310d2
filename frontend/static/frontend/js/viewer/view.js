// One orthogonal view of a CtVolume on a canvas: windowing by a lookup table, the view's transform
// (geometry.js), a backing store sized from the canvas' displayed size x devicePixelRatio and redrawn on every
// size change (ResizeObserver), orientation letters, a millimetre scale bar and the slice position.
import { ViewTransform } from "./geometry.js";

export const NOT_LOADED_RGBA = 0xff402018; // dark blue (ABGR): voxels whose slab is still on its way

/** A packed RGBA (little-endian ABGR) lookup table over all int16 values for a window centre/width. */
export function windowLut(level, width, lut = new Uint32Array(65536), invert = false) {
  const lo = level - width / 2;
  const scale = 255 / Math.max(width, 1);
  for (let v = -32768; v < 32768; v++) {
    let g = (v - lo) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g | 0;
    if (invert) g = 255 - g;
    lut[v + 32768] = 0xff000000 | (g << 16) | (g << 8) | g;
  }
  return lut;
}

/** Grey level 0..255 a window gives HU ``v`` (what windowLut puts in each channel). */
export function greyOf(v, level, width, invert = false) {
  let g = (v - (level - width / 2)) * (255 / Math.max(width, 1));
  g = g < 0 ? 0 : g > 255 ? 255 : g | 0;
  return invert ? 255 - g : g;
}

export class SliceView {
  /** ``shared``: {lut, position: [i, j, k]}; ``onResize(view)`` after the backing store changed size. */
  constructor(canvas, volume, plane, shared, { onResize = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.vol = volume;
    this.plane = plane;
    this.shared = shared;
    this.t = new ViewTransform(volume.affine, volume.header.shape, plane);
    const t = this.t;
    const strides = [1, volume.ni, volume.ni * volume.nj];
    this.strides = { fixed: strides[t.fixed], col: strides[t.colAxis], row: strides[t.rowAxis] };
    this.image = new ImageData(t.w, t.h);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.off = document.createElement("canvas");
    this.off.width = t.w;
    this.off.height = t.h;
    this.offCtx = this.off.getContext("2d");
    this.overlays = [];
    this.onResize = onResize;
    this.filled = null; // [index, lutVersion, slabsLoaded] of the image in this.off
    this.sizeFromLayout();
    this.observer = new ResizeObserver((entries) => this.onObserved(entries[entries.length - 1]));
    try {
      this.observer.observe(canvas, { box: "device-pixel-content-box" });
    } catch {
      this.observer.observe(canvas);
    }
    this.watchPixelRatio();
  }

  /** A change of devicePixelRatio alone (browser zoom, another screen) resizes the backing store too. */
  watchPixelRatio() {
    const query = matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    query.addEventListener("change", () => {
      this.sizeFromLayout();
      this.render(false);
      this.onResize(this);
      this.watchPixelRatio();
    }, { once: true });
  }

  get index() { return this.shared.position[this.t.fixed]; }

  get depth() { return this.t.depth; }

  /** Size the backing store from the canvas' layout box (CSS px x devicePixelRatio). */
  sizeFromLayout() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.setBacking(r.width, r.height, Math.round(r.width * dpr), Math.round(r.height * dpr));
  }

  onObserved(entry) {
    const css = entry.contentBoxSize && entry.contentBoxSize[0];
    const cssW = css ? css.inlineSize : entry.contentRect.width;
    const cssH = css ? css.blockSize : entry.contentRect.height;
    // the exact device-pixel size when the browser reports one consistent with devicePixelRatio (emulated
    // pixel ratios, as in headless test browsers, report CSS pixels there), else CSS size x devicePixelRatio
    const dev = entry.devicePixelContentBoxSize && entry.devicePixelContentBoxSize[0];
    const dpr = window.devicePixelRatio || 1;
    const exact = dev && Math.abs(dev.inlineSize - cssW * dpr) <= 1 && Math.abs(dev.blockSize - cssH * dpr) <= 1;
    const devW = exact ? dev.inlineSize : Math.round(cssW * dpr);
    const devH = exact ? dev.blockSize : Math.round(cssH * dpr);
    if (devW === this.canvas.width && devH === this.canvas.height
        && Math.abs(cssW - this.t.cssW) < 0.01 && Math.abs(cssH - this.t.cssH) < 0.01) return;
    this.setBacking(cssW, cssH, devW, devH);
    this.render(false);
    this.onResize(this);
  }

  setBacking(cssW, cssH, devW, devH) {
    this.canvas.width = Math.max(1, devW);
    this.canvas.height = Math.max(1, devH);
    this.t.setSize(cssW, cssH, this.canvas.width, this.canvas.height);
  }

  /** Fill the image of the current slice through the shared lookup table (the hot path of a slice change). */
  fill() {
    const data = this.vol.data;
    const lut = this.shared.lut;
    const px = this.pixels;
    const { fixed, col, row } = this.strides;
    const base = this.index * fixed;
    const w = this.t.w;
    const h = this.t.h;
    // while slabs arrive, slices k not loaded yet are drawn dark blue (k is the view's slice, row or column axis)
    const loaded = this.vol.complete ? null : this.vol.loaded;
    if (loaded && this.t.fixed === 2 && !loaded[this.index]) {
      px.fill(NOT_LOADED_RGBA);
    } else if (col === 1 && row === w) { // contiguous slice (axial of an axially stored volume)
      const len = w * h;
      for (let p = 0; p < len; p++) px[p] = lut[data[base + p] + 32768];
    } else {
      const rowIsK = loaded && this.t.rowAxis === 2;
      const colIsK = loaded && this.t.colAxis === 2;
      for (let q = 0; q < h; q++) {
        const start = base + q * row;
        const out = q * w;
        if (rowIsK && !loaded[q]) {
          px.fill(NOT_LOADED_RGBA, out, out + w);
        } else if (colIsK) {
          for (let p = 0; p < w; p++) px[out + p] = loaded[p] ? lut[data[start + p * col] + 32768] : NOT_LOADED_RGBA;
        } else {
          for (let p = 0; p < w; p++) px[out + p] = lut[data[start + p * col] + 32768];
        }
      }
    }
    this.offCtx.putImageData(this.image, 0, 0);
    this.filled = [this.index, this.shared.lutVersion, this.vol.slabsLoaded];
  }

  /** Whether the image must be refilled (another slice, another window, more slabs arrived). */
  stale() {
    const f = this.filled;
    return !f || f[0] !== this.index || f[1] !== this.shared.lutVersion || f[2] !== this.vol.slabsLoaded;
  }

  /** Fill when stale (or ``refill``) and draw; returns milliseconds spent. */
  render(refill = false) {
    const t0 = performance.now();
    if (refill || this.stale()) this.fill();
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(...this.t.imageMatrix());
    ctx.imageSmoothingEnabled = this.t.zoom * Math.abs(this.t.hs) < 2; // enlarged pixels stay sharp
    ctx.drawImage(this.off, 0, 0);
    const [sx, sy] = this.t.deviceScale;
    ctx.setTransform(sx, 0, 0, sy, 0, 0); // overlays draw in CSS px
    for (const overlay of this.overlays) overlay(ctx, this);
    this.decorate(ctx);
    return performance.now() - t0;
  }

  decorate(ctx) {
    const W = this.t.cssW;
    const H = this.t.cssH;
    ctx.save();
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillStyle = "#ffd34d";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const [l, r, top, b] = this.t.spec.letters;
    ctx.fillText(l, 10, H / 2);
    ctx.fillText(r, W - 10, H / 2);
    ctx.fillText(top, W / 2, 10);
    ctx.fillText(b, W / 2, H - 10);
    // scale bar: a round length near a fifth of the width
    const zoom = this.t.zoom;
    const target = W / 5 / zoom;
    const nice = [1, 2, 5, 10, 20, 50, 100, 200, 500].reduce((best, v) => (v <= target ? v : best), 1);
    const len = nice * zoom;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(W - 20 - len, H - 24); ctx.lineTo(W - 20, H - 24);
    ctx.moveTo(W - 20 - len, H - 28); ctx.lineTo(W - 20 - len, H - 20);
    ctx.moveTo(W - 20, H - 28); ctx.lineTo(W - 20, H - 20);
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.textAlign = "right";
    ctx.fillText(`${nice} mm`, W - 20, H - 38);
    if (this.plane !== "axial") { // the axial view has the corner overlay instead
      ctx.textAlign = "left";
      this.sliceLabel = `${this.plane} ${this.t.spec.axisName} = ${this.t.sliceMm(this.index).toFixed(1)} mm  `
        + `(${this.t.imageNumber(this.index)}/${this.depth})`; // image number in a PACS's order (geometry.js)
      ctx.fillText(this.sliceLabel, 8, H - 12);
    }
    ctx.restore();
  }
}
