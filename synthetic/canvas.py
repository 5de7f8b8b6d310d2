"""A volume being painted: pixel grid in LPS mm, the patient's body frame (rotated/shifted on the table),
and analytic shapes painted with partial-volume edges, each only over its own bounding sub-block."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

# a shape: (u, v, w) arrays in body mm (broadcastable) -> approximate signed distance in mm, > 0 inside
Shape = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class Canvas:
    """HU (float32) and label (uint8) arrays ``[k, j, i]`` for an axial grid; body frame (u, v, w) is
    LPS rotated by ``theta`` about z and shifted by ``(tx, ty, tz)``."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, theta: float, shift: tuple[float, float, float]):
        self.xs, self.ys, self.zs = (np.asarray(a, np.float32) for a in (xs, ys, zs))
        self.px = float(abs(xs[1] - xs[0]))
        self.c, self.s = float(np.cos(theta)), float(np.sin(theta))
        self.t = shift
        X, Y = np.meshgrid(self.xs - shift[0], self.ys - shift[1])
        self.U = (self.c * X + self.s * Y).astype(np.float32)
        self.V = (-self.s * X + self.c * Y).astype(np.float32)
        self.W = (self.zs - shift[2]).astype(np.float32)
        shape = (len(zs), len(ys), len(xs))
        self.hu = np.full(shape, -1000.0, np.float32)
        self.label = np.zeros(shape, np.uint8)

    def block(self, lo: tuple[float, float, float], hi: tuple[float, float, float]):
        """Index slices (k, j, i) covering the body-frame box [lo, hi], or None when outside the grid."""
        corners = np.array([[u, v] for u in (lo[0], hi[0]) for v in (lo[1], hi[1])])
        x = self.c * corners[:, 0] - self.s * corners[:, 1] + self.t[0]
        y = self.s * corners[:, 0] + self.c * corners[:, 1] + self.t[1]

        def rng(axis: np.ndarray, a: float, b: float):
            step = float(axis[1] - axis[0]) if len(axis) > 1 else 1.0
            i0 = int(np.floor((a - axis[0]) / step)) - 1
            i1 = int(np.ceil((b - axis[0]) / step)) + 2
            i0, i1 = max(i0, 0), min(i1, len(axis))
            return (i0, i1) if i0 < i1 else None

        ri = rng(self.xs, x.min(), x.max())
        rj = rng(self.ys, y.min(), y.max())
        w0, w1 = lo[2] + self.t[2], hi[2] + self.t[2]
        ks = np.nonzero((self.zs >= w0 - 1e-3) & (self.zs <= w1 + 1e-3))[0]
        if ri is None or rj is None or len(ks) == 0:
            return None
        return slice(ks[0], ks[-1] + 1), slice(*rj), slice(*ri)

    def coords(self, blk):
        k, j, i = blk
        return self.U[j, i][None], self.V[j, i][None], self.W[k][:, None, None]

    def paint(self, shape: Shape, lo, hi, value, label: int, only: np.ndarray | None = None) -> None:
        """Blend ``value`` (HU scalar or a function of (u, v, w, d)) into the shape's voxels with a
        one-pixel partial-volume edge; voxels more than half inside take ``label``."""
        blk = self.block(lo, hi)
        if blk is None:
            return
        u, v, w = self.coords(blk)
        d = shape(u, v, w)
        a = np.clip(0.5 + d / self.px, 0.0, 1.0).astype(np.float32)
        if only is not None:
            a = a * np.isin(self.label[blk], only)
        if not a.any():
            return
        val = value(u, v, w, d) if callable(value) else value
        sub = self.hu[blk]
        sub += a * (val - sub)
        lab = self.label[blk]
        lab[a > 0.5] = label


def ellipsoid(c, semi, angle: float = 0.0) -> tuple[Shape, tuple, tuple]:
    """Ellipsoid at ``c`` with semi-axes ``semi`` (u, v, w), rotated by ``angle`` in the axial plane."""
    c = np.asarray(c, np.float32)
    semi = np.asarray(semi, np.float32)
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    m = float(semi.min())

    def f(u, v, w):
        du, dv = u - c[0], v - c[1]
        a = (ca * du + sa * dv) / semi[0]
        b = (-sa * du + ca * dv) / semi[1]
        q = a * a + b * b + ((w - c[2]) / semi[2]) ** 2
        return (1.0 - np.sqrt(q)) * m

    r = float(max(semi[0], semi[1]))
    return f, (c[0] - r, c[1] - r, c[2] - semi[2]), (c[0] + r, c[1] + r, c[2] + semi[2])


def capsule(p0, p1, radius: float) -> tuple[Shape, tuple, tuple]:
    """Cylinder with round ends (a tube segment) from ``p0`` to ``p1``."""
    p0, p1 = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
    d = p1 - p0
    dd = float(d @ d) or 1e-6

    def f(u, v, w):
        t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1] + (w - p0[2]) * d[2]) / dd, 0.0, 1.0)
        du, dv, dw = u - (p0[0] + t * d[0]), v - (p0[1] + t * d[1]), w - (p0[2] + t * d[2])
        return radius - np.sqrt(du * du + dv * dv + dw * dw)

    lo = np.minimum(p0, p1) - radius
    hi = np.maximum(p0, p1) + radius
    return f, tuple(lo), tuple(hi)


def sheet(p0, p1, radius: float, w_centre: float, half_height: float, slope_v: float = 0.0) -> tuple[Shape, tuple, tuple]:
    """A thin lamina: the axial-plane segment ``p0``-``p1`` (u, v) of half-thickness ``radius`` swept along w over
    ``w_centre +- half_height`` (moving by ``slope_v`` mm in v per mm in w), thinning towards its edges."""
    p0, p1 = np.asarray(p0[:2], np.float32), np.asarray(p1[:2], np.float32)
    d = p1 - p0
    dd = float(d @ d) or 1e-6

    def f(u, v, w):
        dz = w - np.float32(w_centre)
        vv = v - np.float32(slope_v) * dz
        t = np.clip(((u - p0[0]) * d[0] + (vv - p0[1]) * d[1]) / dd, 0.0, 1.0)
        du, dv = u - (p0[0] + t * d[0]), vv - (p0[1] + t * d[1])
        r = radius * (1.0 - 0.35 * (dz / half_height) ** 2)
        return np.minimum(r - np.sqrt(du * du + dv * dv), half_height - np.abs(dz))

    ext = radius + abs(slope_v) * half_height
    lo = (min(p0[0], p1[0]) - ext, min(p0[1], p1[1]) - ext, w_centre - half_height)
    hi = (max(p0[0], p1[0]) + ext, max(p0[1], p1[1]) + ext, w_centre + half_height)
    return f, lo, hi


def tube(points, radius: float) -> tuple[Shape, tuple, tuple]:
    """Union of capsules along a polyline."""
    parts = [capsule(a, b, radius) for a, b in zip(points[:-1], points[1:])]

    def f(u, v, w):
        out = parts[0][0](u, v, w)
        for p in parts[1:]:
            out = np.maximum(out, p[0](u, v, w))
        return out

    lo = np.min([p[1] for p in parts], axis=0)
    hi = np.max([p[2] for p in parts], axis=0)
    return f, tuple(lo), tuple(hi)


def intersect(a: tuple, g: Shape) -> tuple:
    f, lo, hi = a
    return (lambda u, v, w: np.minimum(f(u, v, w), g(u, v, w))), lo, hi


def shell(a: tuple, thickness: float) -> tuple:
    """The outer ``thickness`` mm of a shape."""
    f, lo, hi = a
    return (lambda u, v, w: np.minimum(f(u, v, w), thickness - f(u, v, w))), lo, hi
