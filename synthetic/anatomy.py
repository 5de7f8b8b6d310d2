"""Procedural abdominal anatomy in millimetres, painted into a Canvas.

Body frame: u to the patient's left, v posterior, w superior (LPS rotated/shifted on the table);
w = 0 is about the L1 level. Positions are those of a standard adult scaled per patient."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .canvas import Canvas, capsule, ellipsoid, intersect, sheet, shell, tube
from .tissues import LABEL_OF as L
from .tissues import hu

BONE = 750.0


@dataclass
class Gland:
    side: str  # 'R' or 'L'
    shape: str  # 'inverted_Y', 'V', 'lambda'
    limbs: list[tuple[np.ndarray, np.ndarray, float]]  # (start, end, half-thickness): axial-plane segments at w_centre
    upper_pole: np.ndarray  # kidney upper pole in body mm
    half_height: float = 12.0  # the limbs are laminae swept over w_centre +- half_height
    slope_v: float = 0.0  # mm of v per mm of w (the gland leans)

    @property
    def w_centre(self) -> float:
        return float(self.limbs[0][0][2])

    def shapes(self, extra: float = 0.0):
        return [sheet(s, e, r + extra, self.w_centre, self.half_height + extra, self.slope_v) for s, e, r in self.limbs]


@dataclass
class Anatomy:
    """Per-patient anatomical parameters (all random draws happen in ``draw``)."""

    sx: float
    sy: float
    sz: float
    fat: float
    vs: float  # spine body centre v
    glands: dict[str, Gland] = field(default_factory=dict)
    kidneys: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    phases: np.ndarray = field(default_factory=lambda: np.zeros(8))
    bowel: list[tuple] = field(default_factory=list)
    stomach_level: float = 0.0


def draw(rng: np.random.Generator) -> Anatomy:
    sx, sy = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)
    a = Anatomy(sx=sx, sy=sy, sz=rng.uniform(0.92, 1.08), fat=rng.uniform(8, 40), vs=52 * sy)
    vs = a.vs
    for side, m in (("R", -1), ("L", 1)):
        wk = (-42 if side == "R" else -28) + rng.uniform(-8, 8)
        c = np.array([m * (62 + rng.uniform(-5, 5)) * sx, vs + rng.uniform(0, 6), wk])
        semi = np.array([rng.uniform(24, 29), rng.uniform(19, 23), rng.uniform(48, 60)])
        a.kidneys[side] = (c, semi, m * rng.uniform(0.35, 0.6))
        pole = c + np.array([0, 0, semi[2]])
        med = -m  # +u is medial for the right gland
        half_h = rng.uniform(9, 16)  # craniocaudal extent 18-32 mm
        if side == "R":  # posterior to the IVC, superomedial to the upper pole
            apex = pole + np.array([med * (15 + rng.uniform(-2, 2)), -14 + rng.uniform(-2, 2), half_h + rng.uniform(0, 4)])
        else:  # anteromedial to the upper pole, lateral to aorta and crus
            apex = pole + np.array([med * (13 + rng.uniform(-2, 2)), -16 + rng.uniform(-2, 2), half_h + rng.uniform(-2, 2)])
        shape = str(rng.choice(["inverted_Y", "V", "lambda"]))
        ln = rng.uniform(0.8, 1.3)  # limbs 20-40 mm long
        r = rng.uniform(1.5, 3.0)  # 3-6 mm thick
        if shape == "inverted_Y":
            vecs = [(med * 8, 24, 0), (-med * 12, 22, 0), (med * 2, -10, 0)]
        elif shape == "V":
            vecs = [(med * 6, 26, 0), (-med * 14, 20, 0)]
        else:
            vecs = [(med * 4, 26, 0), (-med * 12, 16, 0), (-med * 3, -9, 0)]
        limbs = []
        for n, vec in enumerate(vecs):
            scale = ln if n < 2 else rng.uniform(0.7, 1.1)
            jitter = np.r_[rng.uniform(-2, 2, 2), 0.0]
            limbs.append((apex.copy(), apex + np.array(vec, float) * scale + jitter, r * rng.uniform(0.85, 1.1)))
        a.glands[side] = Gland(side, shape, limbs, pole, half_h, float(rng.uniform(-0.3, 0.3)))
    a.phases = rng.uniform(0, 2 * np.pi, 12)
    for _ in range(int(rng.integers(8, 15))):
        c = np.array([rng.uniform(-70, 70) * sx, rng.uniform(-75, 5) * sy, rng.uniform(-230, -40)])
        a.bowel.append((c, np.array([rng.uniform(10, 17), rng.uniform(10, 17), rng.uniform(12, 35)]),
                        rng.uniform(0, np.pi), float(rng.choice([0.0, 0.3, 1.0]))))
    a.stomach_level = rng.uniform(-20, 5)
    return a


def diaphragm(u, v, sx, sy):
    """Height (w, mm) of the diaphragm over (u, v): two domes, lower posteriorly and laterally."""
    peak = np.where(u < 0, 95.0, 85.0)
    return (peak - 40 * ((np.abs(u) / sx - 55) / 80) ** 2 - 30 * (v / sy / 100) ** 2
            - 0.4 * np.maximum(v / sy - 30, 0) - 12 * np.exp(-(u / 30) ** 2))


def _mottle(ph):
    def f(u, v, w):
        return (np.sin(0.31 * u + 0.17 * w + ph[0]) + np.sin(0.27 * v - 0.22 * w + ph[1])
                + np.sin(0.19 * u + 0.33 * v + ph[2]))
    return f


def paint_body(cv: Canvas, a: Anatomy, phase: str) -> None:
    """Skin, subcutaneous fat, muscle wall with ribs, visceral fat; the table below the back.
    Slice by slice (2-D float32 temporaries stay in cache)."""
    sx, sy, sz = a.sx, a.sy, a.sz
    u, v = cv.U, cv.V
    Bp = np.float32(115 * sy)
    S, M = np.float32(2.0), np.float32(13.0)
    h = np.float32(cv.px / 2)
    vals = [np.float32(hu(t, phase)) for t in ("skin", "subcutaneous_fat", "muscle", "visceral_fat")]
    post = v > 0
    au, av = np.abs(u), np.abs(v)
    fat = np.float32(a.fat) * (0.55 + 0.6 * np.clip(-v / (120 * sy), 0, 1))
    fat = np.where(post, fat * 0.6, fat).astype(np.float32)
    front = ~post & (au < 45 * sx)
    for k, w in enumerate(cv.W):
        ws = float(w) / sz
        A = np.float32((np.interp(ws, [-400, -150, 0, 100, 400], [170, 160, 158, 152, 145]) * sx + a.fat * 0.8))
        Ba = np.float32(np.interp(ws, [-400, -150, 0, 100, 400], [105, 118, 118, 112, 105]) * sy + a.fat * 0.6)
        B = np.where(post, Bp, Ba)
        ru, rv = au / A, av / B
        ru2, rv2 = ru * ru, rv * rv
        q = ru2 + rv2
        r = np.sqrt(np.sqrt(ru2 * ru2 + rv2 * rv2) * 0.35 + q * 0.65)  # between an ellipse and a rounded box
        d = (1 - r) * (ru2 * A + rv2 * B) / np.maximum(q, np.float32(1e-6))  # mm inside the skin
        out = np.float32(-1000) + np.clip((d + h) / (2 * h), 0, 1) * (vals[0] + 1000)
        out += np.clip((d - S + h) / (2 * h), 0, 1) * (vals[1] - vals[0])
        dm = d - S - fat
        out += np.clip((dm + h) / (2 * h), 0, 1) * (vals[2] - vals[1])
        out += np.clip((dm - M + h) / (2 * h), 0, 1) * (vals[3] - vals[2])
        lab = (d >= 0).astype(np.uint8) + (d >= S) + (dm >= 0) + (dm >= M)
        if ws > -15:  # ribs: obliquely running bony bands in the muscle wall from the lower chest up
            ribph = np.mod(ws - 0.3 * (B - v) / sy + a.phases[0] * 4, 30.0)
            ribs = (dm > 2) & (dm < 10) & (ribph < 7) & ~front
            if ribs.any():
                edge = (ribph < 1.5) | (ribph > 5.5) | (dm < 3.5) | (dm > 8.5)
                out = np.where(ribs, np.where(edge, np.float32(600.0), np.float32(250.0)), out)
                lab = np.where(ribs, np.uint8(L["bone_cortex"]), lab)
        cv.hu[k] = out
        cv.label[k] = lab
    # table: a curved slab behind the patient
    f, lo, hi = ellipsoid((0, Bp + 252, 0), (300, 250, 1e5))
    cv.paint(*shell((f, (-260, Bp + 8, -1e4), (260, Bp + 30, 1e4)), 12), hu("table", phase), L["table"],
             only=[L["air"]])


def cyl(cu, cv_, au, av, w0, w1, angle=0.0):
    f, lo, hi = ellipsoid((cu, cv_, (w0 + w1) / 2), (au, av, 1e6), angle)
    return f, (lo[0], lo[1], w0), (hi[0], hi[1], w1)


def paint_spine_and_muscles(cv: Canvas, a: Anatomy, phase: str) -> None:
    sx, sy, vs = a.sx, a.sy, a.vs
    mus = hu("muscle", phase)
    for m in (-1, 1):
        cv.paint(*cyl(m * 34 * sx, vs + 40 * sy, 24 * sx, 20 * sy, -300, 400), mus, L["muscle"])
        # psoas, growing caudally
        cv.paint(*capsule((m * 28 * sx, vs - 2, 20), (m * 38 * sx, vs - 4, -80), 10 * sx), mus, L["muscle"])
        cv.paint(*capsule((m * 38 * sx, vs - 4, -80), (m * 55 * sx, vs - 12, -200), 17 * sx), mus, L["muscle"])
        cv.paint(*capsule((m * 55 * sx, vs - 12, -200), (m * 70 * sx, vs - 30, -300), 19 * sx), mus, L["muscle"])
    period, off = 30.0 * a.sz, a.phases[1] * 5

    def level(w):
        return np.mod(w - off, period)

    def body_val(u, v, w, d):
        lv = level(w)
        disc = lv < 6.5
        return np.where(disc, hu("disc", phase), np.where(d < 1.5, BONE, hu("bone_marrow", phase)))

    cv.paint(*cyl(0, vs, 22 * sx, 17 * sy, -330, 400), body_val, L["bone_marrow"])

    def arch_val(u, v, w, d):
        return np.where(level(w) < 6.5, 60.0, np.where(d < 2, BONE, 400.0))

    cv.paint(*cyl(0, vs + 29 * sy, 14, 12, -330, 400), arch_val, L["bone_cortex"])
    cv.paint(*capsule((0, vs + 36 * sy, -330), (0, vs + 36 * sy, 400), 0.1), arch_val, L["bone_cortex"])
    for lv in np.arange(-12, 14) * period + off:
        wm = lv + 17 * a.sz
        cv.paint(*capsule((0, vs + 36 * sy, wm), (0, vs + 62 * sy, wm - 6), 5.5), arch_val, L["bone_cortex"])
        if -140 < wm < 40:  # lumbar transverse processes
            for m in (-1, 1):
                cv.paint(*capsule((m * 10, vs + 24 * sy, wm), (m * 34 * sx, vs + 24 * sy, wm + 3), 3.0), BONE,
                         L["bone_cortex"])
    cv.paint(*cyl(0, vs + 29 * sy, 8, 7.5, -330, 400), hu("spinal_canal", phase), L["spinal_canal"])


def paint_chest(cv: Canvas, a: Anatomy, phase: str) -> None:
    sx, sy = a.sx, a.sy
    dia = diaphragm(cv.U, cv.V, sx, sy)  # (j, i)

    def above(u, v, w):
        return w - diaphragm(u, v, sx, sy)

    big = (-250, -200, -20), (250, 200, 400)
    cv.paint(above, *big, hu("lung", phase), L["lung"], only=[L["visceral_fat"]])
    # mediastinum fat, heart, trachea
    cv.paint(*intersect(cyl(0, -20 * sy, 35 * sx, 70 * sy, 40, 400), above), hu("visceral_fat", phase),
             L["visceral_fat"], only=[L["lung"]])

    def heart_val(u, v, w, d):
        return np.where(d < 6, hu("muscle", phase), hu("heart", phase))

    cv.paint(*intersect(ellipsoid((18 * sx, -38 * sy, 150), (62 * sx, 50 * sy, 55), 0.5), above), heart_val,
             L["heart"], only=[L["lung"], L["visceral_fat"]])
    # pulmonary vessels branching from each hilum (drawn only inside the lungs)
    vr = np.random.default_rng(int(a.phases[5] * 1e6))
    for m in (-1, 1):
        hilum = np.array([m * 40 * sx, 0.0, 175.0])
        for _ in range(7):
            end = hilum + np.array([m * vr.uniform(40, 100) * sx, vr.uniform(-60, 70) * sy, vr.uniform(-110, 90)])
            mid = (hilum + end) / 2 + vr.normal(0, 8, 3)
            cv.paint(*tube([hilum, mid, end], float(vr.uniform(1.8, 3.2))), hu("pulmonary_vessel", phase),
                     L["pulmonary_vessel"],
                     only=[L["lung"]])
    cv.paint(*tube([(0, -12 * sy, 420), (0, -5 * sy, 215)], 9), -1000.0, L["bowel_gas"])
    for m in (-1, 1):
        cv.paint(*tube([(0, -5 * sy, 215), (m * 45 * sx, 0, 180)], 6), -1000.0, L["bowel_gas"])
    del dia


def paint_vessels(cv: Canvas, a: Anatomy, phase: str) -> None:
    sx, sy, vs = a.sx, a.sy, a.vs
    ao = [(12 * sx, vs - 26 * sy, -150), (14 * sx, vs - 26 * sy, 80), (18 * sx, vs - 20 * sy, 260)]
    cv.paint(*tube(ao, 11 * sx), hu("aorta", phase), L["aorta"])
    for m in (-1, 1):
        cv.paint(*tube([ao[0], (m * 55 * sx, vs - 22 * sy, -260), (m * 75 * sx, vs - 35 * sy, -340)], 6.5),
                 hu("aorta", phase), L["aorta"])
        cv.paint(*tube([(m * 10 * sx, vs - 10 * sy, -150), (m * 50 * sx, vs - 10 * sy, -260)], 7), hu("ivc", phase),
                 L["ivc"])
    cv.paint(*tube([(-20 * sx, vs - 34 * sy, -160), (-22 * sx, vs - 36 * sy, 20), (-15 * sx, vs - 48 * sy, 110)],
                   11 * sx), hu("ivc", phase), L["ivc"])
    # SMA and SMV
    cv.paint(*tube([(12 * sx, vs - 38 * sy, -8), (8 * sx, vs - 70 * sy, -60), (5 * sx, vs - 75 * sy, -140)], 3.5),
             hu("aorta", phase), L["aorta"])
    cv.paint(*tube([(-8 * sx, vs - 72 * sy, -140), (-5 * sx, vs - 66 * sy, -20)], 5), hu("portal_vein", phase),
             L["portal_vein"])
    # renal veins/arteries
    for side, (c, semi, ang) in a.kidneys.items():
        m = -1 if side == "R" else 1
        hil = c + np.array([-m * 18, -10, 0])
        cv.paint(*capsule((m * 4 * sx, vs - 28 * sy, c[2] + 10), hil, 3.5), hu("aorta", phase), L["aorta"])
        cv.paint(*capsule((-20 * sx if m < 0 else 10 * sx, vs - 40 * sy, c[2] + 14), hil + [0, -4, 4], 5),
                 hu("ivc", phase), L["ivc"])


def paint_abdomen(cv: Canvas, a: Anatomy, phase: str) -> None:
    sx, sy, vs = a.sx, a.sy, a.vs

    def below(u, v, w):
        return diaphragm(u, v, sx, sy) - w

    vf = [L["visceral_fat"]]
    # stomach with an air-fluid level (air anterior: the patient is supine)
    sc, ss = np.array([50 * sx, -38 * sy, 45]), np.array([45 * sx, 33 * sy, 50])
    lvl = sc[1] + a.stomach_level

    def gastric(u, v, w, d):
        return np.where(d < 4.5, hu("stomach_wall", phase), np.where(v < lvl, -990.0, hu("gastric_fluid", phase)))

    cv.paint(*intersect(ellipsoid(sc, ss, 0.4), below), gastric, L["stomach_wall"], only=vf)
    # spleen
    cv.paint(*intersect(ellipsoid((85 * sx, 45 * sy, 45), (24 * sx, 46 * sy, 52), 0.55), below), hu("spleen", phase),
             L["spleen"], only=vf)
    # liver: right lobe and left lobe under the domes
    liv = hu("liver", phase)
    cv.paint(*intersect(ellipsoid((-62 * sx, -5 * sy, 42), (80 * sx, 82 * sy, 70), -0.25), below), liv, L["liver"], only=vf)
    cv.paint(*intersect(ellipsoid((-5 * sx, -58 * sy, 62), (45 * sx, 28 * sy, 30), 0.2), below), liv, L["liver"], only=vf)
    # colon with mottled stool and gas, small bowel loops
    mot = _mottle(a.phases[2:5])

    def colon(u, v, w, d):
        return np.where(d < 2.5, hu("bowel_wall", phase), np.where(mot(u, v, w) > 1.1, -950.0, hu("bowel_content", phase)))

    c_pts = [(-85 * sx, 10 * sy, -190), (-88 * sx, 5 * sy, -40), (-40 * sx, -60 * sy, -50), (30 * sx, -62 * sy, -42),
             (82 * sx, -10 * sy, -15), (88 * sx, 12 * sy, -160), (40 * sx, -20 * sy, -260)]
    cv.paint(*tube(c_pts, 20 * sx), colon, L["bowel_wall"], only=vf)
    for c, semi, ang, gas in a.bowel:
        def sb(u, v, w, d, gas=gas, c=c):
            content = np.where(v < c[1] - (1 - gas) * 10, -950.0, 10.0) if gas else 10.0
            return np.where(d < 2.5, hu("bowel_wall", phase), content)

        cv.paint(*ellipsoid(c, semi, ang), sb, L["bowel_wall"], only=vf)
    # pancreas
    cv.paint(*tube([(-28 * sx, vs - 60 * sy, -25), (0, vs - 72 * sy, -12), (30 * sx, vs - 58 * sy, -5),
                    (68 * sx, vs - 30 * sy, 8)], 10), hu("pancreas", phase), L["pancreas"], only=vf + [L["bowel_wall"]])
    # portal vein and hepatic veins, gallbladder
    cv.paint(*tube([(-5 * sx, vs - 66 * sy, -20), (-30 * sx, vs - 60 * sy, 15), (-60 * sx, vs - 55 * sy, 35)], 7),
             hu("portal_vein", phase), L["portal_vein"], only=vf + [L["liver"], L["pancreas"]])
    top = (-15 * sx, vs - 48 * sy, 100)
    for end in ((-85 * sx, -20 * sy, 75), (-40 * sx, -45 * sy, 80), (10 * sx, -45 * sy, 80)):
        cv.paint(*capsule(top, end, 4), hu("ivc", phase), L["ivc"], only=[L["liver"]])
    cv.paint(*ellipsoid((-52 * sx, -50 * sy, 0), (15, 14, 32), 0.3), hu("gallbladder", phase), L["gallbladder"],
             only=vf + [L["liver"]])
    # kidneys: cortex, medulla, sinus fat
    for side, (c, semi, ang) in a.kidneys.items():
        m = -1 if side == "R" else 1
        kid = [L["visceral_fat"], L["liver"], L["spleen"], L["bowel_wall"], L["lung"], L["muscle"]]
        cv.paint(*ellipsoid(c, semi, ang), hu("kidney_cortex", phase), L["kidney_cortex"], only=kid)
        cv.paint(*ellipsoid(c, semi * 0.72, ang), hu("kidney_medulla", phase), L["kidney_medulla"],
                 only=[L["kidney_cortex"]])
        cv.paint(*ellipsoid(c + np.array([-m * 10, -6, 0]), semi * [0.35, 0.3, 0.55], ang), hu("renal_sinus_fat", phase),
                 L["renal_sinus_fat"], only=[L["kidney_medulla"], L["kidney_cortex"]])
    # crura: thin bands from the vertebral bodies, around the aorta
    for m, r in ((-1, 4.0), (1, 3.5)):
        pts = [(m * 10 * sx + 3, vs - 14 * sy, -45), (m * 18 * sx + 12, vs - 30 * sy, 15), (m * 8 * sx + 6, vs - 58 * sy, 70)]
        cv.paint(*tube(pts, r), hu("crus", phase), L["crus"],
                 only=vf + [L["liver"], L["lung"], L["spleen"], L["stomach_wall"]])
    # pelvis: iliac wings, sacrum, femoral heads, bladder
    for m in (-1, 1):
        wing = shell(ellipsoid((m * 92 * sx, 25 * sy, -205), (48 * sx, 62 * sy, 55), m * 0.5), 6)
        cv.paint(*intersect(wing, lambda u, v, w, m=m: (m * u - 75 * sx) + 0.0 * v), BONE,  # the lateral blade only
                 L["bone_cortex"], only=vf + [L["muscle"], L["bowel_wall"]])
        cv.paint(*ellipsoid((m * 88 * sx, 10 * sy, -345), (24, 24, 24)),
                 lambda u, v, w, d: np.where(d < 3, BONE, 300.0), L["bone_cortex"])
    cv.paint(*ellipsoid((0, vs + 12, -235), (48 * sx, 20 * sy, 50)), lambda u, v, w, d: np.where(d < 3, BONE, 300.0),
             L["bone_cortex"])
    cv.paint(*ellipsoid((0, -35 * sy, -325), (45 * sx, 35 * sy, 32)), hu("bladder", phase), L["bladder"], only=vf)


def paint_glands(cv: Canvas, a: Anatomy, phase: str) -> None:
    """Periadrenal fat, then the adrenal limbs on top of everything."""
    soft = [L["visceral_fat"], L["liver"], L["spleen"], L["stomach_wall"], L["pancreas"], L["bowel_wall"], L["lung"],
            L["muscle"]]
    for g in a.glands.values():
        for shp in g.shapes(extra=4.5):
            cv.paint(*shp, hu("visceral_fat", phase), L["visceral_fat"], only=soft)
    for g in a.glands.values():
        for shp in g.shapes():
            cv.paint(*shp, hu("adrenal", phase), L["adrenal"])


def gland_block(cv: Canvas, g: Gland, margin: float = 8.0):
    lo = np.min([shp[1] for shp in g.shapes()], axis=0) - margin
    hi = np.max([shp[2] for shp in g.shapes()], axis=0) + margin
    return cv.block(tuple(lo), tuple(hi))


def paint_patient(cv: Canvas, a: Anatomy, phase: str) -> None:
    paint_body(cv, a, phase)
    paint_spine_and_muscles(cv, a, phase)
    paint_chest(cv, a, phase)
    paint_vessels(cv, a, phase)
    paint_abdomen(cv, a, phase)
    paint_glands(cv, a, phase)
