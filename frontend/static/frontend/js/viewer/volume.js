// A CT volume in the browser: raw little-endian int16 voxels [k, j, i] and the affine voxel (i, j, k) -> LPS mm,
// streamed slab by slab (the server prepares the slabs at import): the slab holding the first slice to show
// comes first, then the others nearest it, so the first image appears after one small download.
import { invertAffine, lpsToVoxel, voxelToLps } from "./geometry.js";

export class CtVolume {
  constructor(header) {
    this.header = header;
    [this.nk, this.nj, this.ni] = header.shape;
    this.affine = header.affine;
    this.inverse = invertAffine(header.affine);
    this.data = new Int16Array(this.nk * this.nj * this.ni); // zeros until their slab arrives (see ``loaded``)
    this.loaded = new Uint8Array(this.nk); // 1 for slices k whose slab arrived
    this.slabsLoaded = 0;
  }

  get dims() { return [this.ni, this.nj, this.nk]; }

  /** Voxel (i, j, k) -> LPS [x, y, z] mm. */
  voxelToLps(i, j, k) { return voxelToLps(this.affine, [i, j, k]); }

  /** LPS [x, y, z] mm -> continuous voxel (i, j, k). */
  lpsToVoxel(x, y, z) { return lpsToVoxel(this.inverse, [x, y, z]); }

  contains(i, j, k) {
    return i >= 0 && j >= 0 && k >= 0 && i < this.ni && j < this.nj && k < this.nk;
  }

  /** HU at integer voxel (i, j, k), or null outside the volume or before its slab arrived. */
  value(i, j, k) {
    if (!this.contains(i, j, k) || !this.loaded[k]) return null;
    return this.data[(k * this.nj + j) * this.ni + i];
  }

  get complete() { return this.slabsLoaded === this.header.slabs.count; }
}

/** Slab numbers ordered by distance from the slab holding slice ``k`` (that slab first). */
export function slabOrder(count, perSlab, k) {
  const first = Math.max(0, Math.min(count - 1, Math.floor(k / perSlab)));
  const order = [first];
  for (let d = 1; order.length < count; d++) {
    if (first + d < count) order.push(first + d);
    if (first - d >= 0) order.push(first - d);
  }
  return order;
}

/**
 * Stream the volume of ``header`` (from /api/series/<id>/volume/): slabs in ``slabOrder`` from slice ``firstK``,
 * ``parallel`` at a time. ``onSlab(k0, k1, volume)`` after each slab is in place. Returns {volume, done} at once;
 * ``done`` resolves when every slab arrived (rejects on an HTTP error or a slab of the wrong size).
 */
export function streamVolume(header, { firstK = 0, parallel = 4, onSlab = () => {} } = {}) {
  const { slices, count, url } = header.slabs;
  const queue = slabOrder(count, slices, firstK);
  const get = (n) => fetch(url.replace("{n}", String(n)), { credentials: "same-origin" });
  const early = queue.length ? get(queue[0]) : null; // asked before the big buffer is allocated
  const volume = new CtVolume(header);
  const sliceLen = volume.nj * volume.ni;
  async function fetchSlab(n, pending = null) {
    const response = await (pending || get(n));
    if (!response.ok) {
      let detail = "";
      try { detail = (await response.json()).detail || ""; } catch { /* not JSON */ }
      throw new Error(`volume slab ${n}: ${detail || `HTTP ${response.status}`}`);
    }
    const k0 = n * slices;
    const k1 = Math.min(volume.nk, k0 + slices);
    const buffer = await response.arrayBuffer();
    if (buffer.byteLength !== (k1 - k0) * sliceLen * 2) {
      throw new Error(`volume slab ${n}: ${buffer.byteLength} bytes, expected ${(k1 - k0) * sliceLen * 2}`);
    }
    volume.data.set(new Int16Array(buffer), k0 * sliceLen);
    volume.loaded.fill(1, k0, k1);
    volume.slabsLoaded++;
    onSlab(k0, k1, volume);
  }
  async function worker() {
    while (queue.length) await fetchSlab(queue.shift());
  }
  // the first slab alone, so it is not slowed by the others; then the rest, ``parallel`` at a time
  const done = (async () => {
    if (!queue.length) return volume;
    await fetchSlab(queue.shift(), early);
    await Promise.all(Array.from({ length: Math.min(parallel, queue.length) }, worker));
    return volume;
  })();
  return { volume, done };
}
