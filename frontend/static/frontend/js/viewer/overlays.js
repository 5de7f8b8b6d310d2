// What the views draw over the image, in CSS px through each view's transform (geometry.js): both crop boxes
// with the selected side's handles, the other views' positions, rulers and lesion markers; and the hit test
// that decides what a press in select mode grabs.
import { distanceMm } from "./geometry.js";

export const COLOURS = { R: "#4fc3f7", L: "#ff8a65" };
export const HANDLE_PX = 7;

/** The eight handles of a screen rectangle (corners and edge midpoints). */
export function handlePoints(r) {
  const mx = (r.x1 + r.x2) / 2;
  const my = (r.y1 + r.y2) / 2;
  return [[r.x1, r.y1], [mx, r.y1], [r.x2, r.y1], [r.x2, my], [r.x2, r.y2], [mx, r.y2], [r.x1, r.y2], [r.x1, my]];
}

/**
 * What a press at screen (x, y) grabs of ``box`` on ``view``: {edges: {x1, x2, y1, y2}} for an edge or handle,
 * {edges: "move"} inside it, or null. Only a box the view's slice passes through can be grabbed.
 */
export function hitBox(view, box, x, y) {
  if (!box || !box.lps_min || !view.t.sliceInBox(box, view.index)) return null;
  const r = view.t.boxRect(box);
  const near = (a, b) => Math.abs(a - b) <= HANDLE_PX;
  const within = x >= r.x1 - HANDLE_PX && x <= r.x2 + HANDLE_PX && y >= r.y1 - HANDLE_PX && y <= r.y2 + HANDLE_PX;
  if (!within) return null;
  const edges = { x1: near(x, r.x1), x2: near(x, r.x2), y1: near(y, r.y1), y2: near(y, r.y2) };
  if (edges.x1 || edges.x2 || edges.y1 || edges.y2) return { edges, rect: r };
  if (x > r.x1 && x < r.x2 && y > r.y1 && y < r.y2) return { edges: "move", rect: r };
  return null;
}

/** Whether screen (x, y) lies inside ``box`` as drawn on ``view`` (its slice passing through it). */
export function insideBox(view, box, x, y) {
  if (!box || !box.lps_min || !view.t.sliceInBox(box, view.index)) return false;
  const r = view.t.boxRect(box);
  return x > r.x1 && x < r.x2 && y > r.y1 && y < r.y2;
}

/** Both boxes: solid when confirmed, dashed when proposed, faint where the slice misses them. */
export function drawBoxes(ctx, view, boxes, selected) {
  for (const side of ["R", "L"]) {
    const box = boxes[side];
    if (!box || !box.lps_min) continue;
    const r = view.t.boxRect(box);
    const through = view.t.sliceInBox(box, view.index);
    ctx.save();
    ctx.globalAlpha = through ? 1 : 0.35;
    ctx.strokeStyle = COLOURS[side];
    ctx.lineWidth = side === selected ? 2 : 1.25;
    ctx.setLineDash(box.status === "confirmed" ? [] : [6, 4]);
    ctx.strokeRect(r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1);
    ctx.setLineDash([]);
    ctx.fillStyle = COLOURS[side];
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "bottom";
    ctx.fillText(`${side}${box.status === "confirmed" ? " ✓" : ""}`, r.x1 + 2, r.y1 - 2);
    if (side === selected && through) {
      for (const [hx, hy] of handlePoints(r)) ctx.fillRect(hx - 3, hy - 3, 6, 6);
    }
    ctx.restore();
  }
}

/** The other views' positions: dashed lines on coronal and sagittal, edge ticks on the axial view. */
export function drawCrosshair(ctx, view, position) {
  const [x, y] = view.t.voxelToScreen(position);
  const W = view.t.cssW;
  const H = view.t.cssH;
  ctx.save();
  ctx.strokeStyle = "rgba(255, 235, 59, .55)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  if (view.plane === "axial") {
    ctx.moveTo(x, 0); ctx.lineTo(x, 12); ctx.moveTo(x, H - 12); ctx.lineTo(x, H);
    ctx.moveTo(0, y); ctx.lineTo(12, y); ctx.moveTo(W - 12, y); ctx.lineTo(W, y);
  } else {
    ctx.setLineDash([4, 4]);
    ctx.moveTo(0, y); ctx.lineTo(W, y);
    ctx.moveTo(x, 0); ctx.lineTo(x, H);
  }
  ctx.stroke();
  ctx.restore();
}

/** Rulers measured on this view's current slice: a line with end ticks and its length in mm. */
export function drawRulers(ctx, view, rulers) {
  for (const ruler of rulers) {
    if (ruler.plane !== view.plane || ruler.index !== view.index) continue;
    const [ax, ay] = view.t.lpsToScreen(ruler.a);
    const [bx, by] = view.t.lpsToScreen(ruler.b);
    ctx.save();
    ctx.strokeStyle = "#7CFC00";
    ctx.fillStyle = "#7CFC00";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(ax, ay); ctx.lineTo(bx, by);
    ctx.stroke();
    for (const [px, py] of [[ax, ay], [bx, by]]) ctx.fillRect(px - 2.5, py - 2.5, 5, 5);
    ctx.font = "13px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.fillText(`${distanceMm(ruler.a, ruler.b).toFixed(1)} mm`, Math.max(ax, bx) + 6, Math.min(ay, by) - 2);
    ctx.restore();
  }
}

/** Lesion markers (spheres) where this view's slice cuts them: a circle and a cross at the centre. */
export function drawLesions(ctx, view, markers) {
  for (const [side, m] of Object.entries(markers)) {
    if (!m || !m.lesion_centre_lps || !m.lesion_diameter_mm) continue;
    const r = m.lesion_diameter_mm / 2;
    const d = Math.abs(view.t.sliceMm(view.index) - m.lesion_centre_lps[view.t.spec.fixedL]);
    if (d > r) continue;
    const [cx, cy] = view.t.lpsToScreen(m.lesion_centre_lps);
    const rad = Math.sqrt(r * r - d * d) * view.t.zoom;
    ctx.save();
    ctx.strokeStyle = COLOURS[side];
    ctx.lineWidth = 1.5;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.arc(cx, cy, Math.max(rad, 2), 0, 2 * Math.PI);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.beginPath();
    ctx.moveTo(cx - 4, cy); ctx.lineTo(cx + 4, cy); ctx.moveTo(cx, cy - 4); ctx.lineTo(cx, cy + 4);
    ctx.stroke();
    ctx.fillStyle = COLOURS[side];
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(`${side} lesion ${m.lesion_diameter_mm.toFixed(1)} mm`, cx + rad + 4, cy);
    ctx.restore();
  }
}

/** A line being drawn (ruler or lesion diameter) from screen a to b, with its length. */
export function drawLine(ctx, a, b, colour, label) {
  ctx.save();
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]);
  ctx.stroke();
  ctx.font = "13px system-ui, sans-serif";
  ctx.fillText(label, Math.max(a[0], b[0]) + 6, Math.min(a[1], b[1]) - 2);
  ctx.restore();
}
