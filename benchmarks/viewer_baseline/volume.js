// A CT volume in the browser: raw little-endian int16 voxels [k, j, i] and the affine voxel (i, j, k) -> LPS mm.

export class CtVolume {
  constructor(header, data) {
    this.header = header;
    [this.nk, this.nj, this.ni] = header.shape;
    this.data = data; // Int16Array, length nk*nj*ni
    this.affine = header.affine;
    this.inverse = invertAffine(header.affine);
  }

  /** Voxel (i, j, k) -> LPS [x, y, z] mm. */
  voxelToLps(i, j, k) {
    const a = this.affine;
    return [0, 1, 2].map((r) => a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3]);
  }

  /** LPS [x, y, z] mm -> continuous voxel (i, j, k). */
  lpsToVoxel(x, y, z) {
    const b = this.inverse;
    return [0, 1, 2].map((r) => b[r][0] * x + b[r][1] * y + b[r][2] * z + b[r][3]);
  }

  value(i, j, k) {
    return this.data[(k * this.nj + j) * this.ni + i];
  }
}

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

/** Fetch the header's data_url (gzip-encoded by the server, inflated by the browser), reporting progress 0..1. */
export async function loadVolume(header, onProgress = () => {}) {
  const [nk, nj, ni] = header.shape;
  const bytes = nk * nj * ni * 2;
  const response = await fetch(header.data_url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`volume data: HTTP ${response.status}`);
  const buffer = new Uint8Array(bytes);
  const reader = response.body.getReader();
  let offset = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (offset + value.length > bytes) throw new Error("volume data is larger than its header says");
    buffer.set(value, offset);
    offset += value.length;
    onProgress(offset / bytes);
  }
  if (offset !== bytes) throw new Error(`volume data: got ${offset} bytes, expected ${bytes}`);
  return new CtVolume(header, new Int16Array(buffer.buffer));
}
