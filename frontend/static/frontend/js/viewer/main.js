// The CT viewer page: streams the volume slab by slab, windows it in the browser, edits both crop boxes and the
// per-side findings, and offers the reading tools (HU under the cursor, ruler, click-to-navigate, cine, invert,
// window presets). Every drawing call and pointer event goes through the views' transforms (geometry.js).
import { BoxStore, DEFAULT_SIZE_MM, SIDES } from "./boxes.js";
import { EvidenceLayer } from "./evidence.js";
import { FindingStore } from "./findings.js";
import { ViewTransform, distanceMm, lpsToVoxel, voxelToLps } from "./geometry.js";
import { COLOURS, drawBoxes, drawCrosshair, drawLesions, drawLine, drawRulers, hitBox, insideBox } from "./overlays.js";
import { CornerOverlay, Panel, fillHelp } from "./panel.js";
import { VerdictStrip } from "./strip.js";
import { SliceView, windowLut } from "./view.js";
import { streamVolume } from "./volume.js";

// window presets (width / level, HU), on the number keys
const PRESETS = [
  { key: "1", name: "Abdomen", width: 400, level: 40 },
  { key: "2", name: "Adrenal / soft tissue", width: 350, level: 40 },
  { key: "3", name: "Liver", width: 150, level: 30 },
  { key: "4", name: "Bone", width: 1800, level: 400 },
  { key: "5", name: "Lung", width: 1500, level: -600 },
  { key: "6", name: "Model input −200..400", width: 600, level: 100 },
];
const DEFAULT_EXTENT_MM = [DEFAULT_SIZE_MM, DEFAULT_SIZE_MM, 60]; // a new box: 72 x 72 mm in-plane, 60 mm high
const MODES = { select: "mode-select", draw: "mode-draw", ruler: "mode-ruler", lesion: "mode-lesion" };
const CLICK_PX = 3; // a press that moves less than this is a click

const config = JSON.parse(document.getElementById("viewer-config").textContent);
const $ = (id) => document.getElementById(id);
const state = { level: 40, width: 400, invert: false, side: "R", mode: "select", active: null, cineTimer: null,
  rulers: [], pointer: null };
const shared = { lut: windowLut(40, 400), lutVersion: 0, position: [0, 0, 0] };
let vol = null;
const views = {};
let boxes = null;
let findings = null;
let panel = null;
let corner = null;
let strip = null;
let evidence = null; // the latest verdict's evidence maps over the axial view (evidence.js)
let drag = null;
let preview = null; // {kind: "box", side, box} | {kind: "line", view, a, b, colour, label}
let frameRequested = false;

function status(text) { $("save-status").textContent = text; }

// ------------------------------------------------------------------ rendering
/** Draw every view now (fills only the images whose slice, window or data changed). */
function renderAll() {
  frameRequested = false;
  for (const v of Object.values(views)) v.render();
  updateReadouts();
}

/** Draw at the next animation frame (pointer moves, slabs arriving). */
function requestRender() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => { if (frameRequested) renderAll(); });
}

function updateReadouts() {
  const ax = views.axial;
  if (!ax) return;
  const step = Math.abs(ax.t.sliceMm(1) - ax.t.sliceMm(0));
  corner.update({ z: ax.t.sliceMm(ax.index), number: ax.t.imageNumber(ax.index), depth: ax.depth, step, level: state.level,
    width: state.width, invert: state.invert, zoom: ax.t.zoom });
  if (strip) strip.setCurrent(ax.t.sliceMm(ax.index));
  // a resting pointer: its voxel changes with the slice (keys, cine, navigation), zoom and pan
  if (state.pointer) hover(state.pointer.view, state.pointer.x, state.pointer.y);
}

function updatePanel() {
  if (!panel) return;
  panel.update(boxes, findings, state.side);
  const badge = $("series-status");
  const bs = SIDES.map((s) => boxes.boxes[s]).filter((b) => b && b.lps_min);
  if (badge && bs.length && badge.dataset.status !== "not_covered") {
    const value = bs.length === 2 && bs.every((b) => b.status === "confirmed" && !b.dirty) ? "confirmed" : "proposed";
    badge.className = `badge ${value}`;
    badge.textContent = value === "confirmed" ? "Confirmed" : "Proposed";
  }
}

function onStoreChange() { updatePanel(); requestRender(); }

// ------------------------------------------------------------------ position, window, modes
function clampIndex(v, n) { return Math.max(0, Math.min(n - 1, Math.round(v))); }

/** Move ``view`` (default axial) to slice ``index``; renders at once and returns the milliseconds it took. */
function setSlice(index, view = views.axial) {
  shared.position[view.t.fixed] = clampIndex(index, view.depth);
  const t0 = performance.now();
  renderAll();
  return performance.now() - t0;
}

/** The index step of one image "down" (wheel down, ↓, PgDn: the next image) in the order a PACS lists each plane:
 * axial head to feet, coronal front to back, sagittal right to left (geometry.js, ViewTransform.nextStep). */
function downStep(view) { return view.t.nextStep; }

function stepSlice(view, step) { setSlice(view.index + step * downStep(view), view); }

/** Centre every view on voxel (i, j, k) (click-to-navigate); the clicked view keeps its own slice. */
function navigateTo(ijk, from = null) {
  const dims = vol.dims;
  for (let a = 0; a < 3; a++) if (!from || a !== from.t.fixed) shared.position[a] = clampIndex(ijk[a], dims[a]);
  renderAll();
}

function setWindow(level, width, invert = state.invert) {
  state.level = Math.round(level);
  state.width = Math.max(1, Math.round(width));
  state.invert = invert;
  windowLut(state.level, state.width, shared.lut, state.invert);
  shared.lutVersion++;
  $("wl").textContent = `W ${state.width} / L ${state.level}`;
  $("invert").classList.toggle("primary", state.invert);
  const preset = PRESETS.find((p) => p.width === state.width && p.level === state.level);
  $("preset").value = preset ? preset.key : "";
  renderAll();
}

function setMode(mode) {
  state.mode = mode;
  for (const [m, id] of Object.entries(MODES)) $(id).classList.toggle("primary", m === mode);
  const hints = {
    select: "",
    draw: `Draw the ${state.side} box: drag on any view (a click places ${DEFAULT_SIZE_MM}×${DEFAULT_SIZE_MM} mm); Esc cancels`,
    ruler: "Ruler: drag to measure; Delete removes the last; Esc leaves",
    lesion: `Lesion marker for ${state.side}: drag across the lesion (its diameter); Esc cancels`,
  };
  status(hints[mode]);
  for (const v of Object.values(views)) v.canvas.style.cursor = mode === "select" ? "default" : "crosshair";
}

function setSide(side) {
  state.side = side;
  for (const s of SIDES) $(`side-${s}`).classList.toggle("primary", s === side);
  if (state.mode !== "select") setMode(state.mode); // the hint names the side
  if (!boxes.history[side].length) boxes.loadHistory(side);
  if (!findings.history[side].length) findings.loadHistory(side);
  updatePanel();
  requestRender();
}

function toggleCine(on = state.cineTimer === null) {
  clearInterval(state.cineTimer);
  state.cineTimer = null;
  if (on) {
    const view = state.active || views.axial;
    const fps = Math.max(1, Math.min(30, Number($("fps").value) || 10));
    // the next image each frame, in the order the images are listed (as ↓), from the last back to the first
    const next = () => (view.index + view.t.nextStep + view.depth) % view.depth;
    state.cineTimer = setInterval(() => setSlice(next(), view), 1000 / fps);
  }
  $("cine").classList.toggle("primary", state.cineTimer !== null);
  $("cine").textContent = state.cineTimer !== null ? "■ Cine" : "▶ Cine";
}

// ------------------------------------------------------------------ boxes: templates and edits
/** The box a new drawing on ``view`` starts from: the side's box when the view's slice passes through it, else
 * the default extent along the view's own axis around the current position. */
function drawTemplate(view) {
  const existing = boxes.boxes[state.side];
  if (existing && existing.lps_min && view.t.sliceInBox(existing, view.index)) return { ...existing };
  const centre = vol.voxelToLps(...shared.position);
  const axis = view.t.spec.fixedL;
  const lo = [...centre];
  const hi = [...centre];
  lo[axis] -= DEFAULT_EXTENT_MM[axis] / 2;
  hi[axis] += DEFAULT_EXTENT_MM[axis] / 2;
  return { side: state.side, status: "proposed", version: 0, lps_min: lo, lps_max: hi };
}

function markZ(which) {
  const box = boxes.boxes[state.side];
  if (!box || !box.lps_min) { status(`${state.side}: draw the box first (d)`); return; }
  const z = views.axial.t.sliceMm(views.axial.index);
  const lo = [...box.lps_min];
  const hi = [...box.lps_max];
  // a lowest slice at or above the top (or a highest at or below the bottom) would turn the box over onto the
  // slices beyond it, away from the gland: refused, saying which key does what was probably meant
  if (which === "min" ? z >= hi[2] : z <= lo[2]) {
    const edge = which === "min" ? `at or above its highest slice (z ${hi[2].toFixed(1)} mm); ] sets the highest`
      : `at or below its lowest slice (z ${lo[2].toFixed(1)} mm); [ sets the lowest`;
    status(`${state.side}: not changed — this slice (z ${z.toFixed(1)} mm) is ${edge}`);
    return;
  }
  if (which === "min") lo[2] = z; else hi[2] = z;
  boxes.set(state.side, lo, hi);
}

// ------------------------------------------------------------------ pointer interaction
function pointerLps(view, x, y) { return view.t.screenToLps(x, y, view.index); }

function onPointerDown(view, e) {
  state.active = view;
  const [x, y] = view.t.eventToScreen(e, view.canvas);
  view.canvas.setPointerCapture(e.pointerId);
  e.preventDefault();
  const start = { view, x0: x, y0: y, lx: x, ly: y };
  if (e.button === 1 || e.button === 2 || (e.button === 0 && e.shiftKey)) {
    drag = { kind: "pan", ...start };
  } else if (e.button !== 0) {
    drag = null;
  } else if (state.mode === "draw") {
    drag = { kind: "draw", ...start, template: drawTemplate(view) };
  } else if (state.mode === "ruler" || state.mode === "lesion") {
    drag = { kind: state.mode, ...start, a: pointerLps(view, x, y) };
  } else {
    const grabbed = hitBox(view, boxes.boxes[state.side], x, y); // only the selected side's box is edited
    drag = grabbed ? { kind: "box", ...start, ...grabbed, side: state.side, box: { ...boxes.boxes[state.side] } }
      : { kind: "press", ...start, level: state.level, width: state.width };
  }
}

function onPointerMove(view, e) {
  const [x, y] = view.t.eventToScreen(e, view.canvas);
  hover(view, x, y);
  if (!drag || drag.view !== view) {
    if (!drag && state.mode === "select") {
      const h = hitBox(view, boxes.boxes[state.side], x, y);
      view.canvas.style.cursor = !h ? "default" : h.edges === "move" ? "move" : "nwse-resize";
    }
    return;
  }
  const dx = x - drag.x0;
  const dy = y - drag.y0;
  if (drag.kind === "press" && Math.hypot(dx, dy) > CLICK_PX) drag.kind = "window";
  if (drag.kind === "window") {
    setWindow(drag.level - dy * 2, drag.width + dx * 4);
  } else if (drag.kind === "pan") {
    view.t.panBy(x - drag.lx, y - drag.ly);
    drag.lx = x; drag.ly = y;
    requestRender();
  } else if (drag.kind === "box") {
    const [lo, hi] = view.t.boxFromRect(drag.box, draggedRect(drag, dx, dy), view.index);
    preview = { kind: "box", side: drag.side, box: { ...drag.box, lps_min: lo, lps_max: hi } };
    requestRender();
  } else if (drag.kind === "draw") {
    const [lo, hi] = view.t.boxFromRect(drag.template, { x1: drag.x0, y1: drag.y0, x2: x, y2: y }, view.index);
    preview = { kind: "box", side: state.side, box: { ...drag.template, lps_min: lo, lps_max: hi } };
    requestRender();
  } else if (drag.kind === "ruler" || drag.kind === "lesion") {
    const b = pointerLps(view, x, y);
    const d = distanceMm(drag.a, b);
    preview = { kind: "line", view, a: [drag.x0, drag.y0], b: [x, y],
      colour: drag.kind === "ruler" ? "#7CFC00" : COLOURS[state.side], label: `${d.toFixed(1)} mm` };
    requestRender();
  }
}

/** The screen rectangle of a box being moved (by its body) or resized (by edges) by (dx, dy) CSS px. */
function draggedRect(d, dx, dy) {
  const r = { ...d.rect };
  if (d.edges === "move") return { x1: r.x1 + dx, x2: r.x2 + dx, y1: r.y1 + dy, y2: r.y2 + dy };
  if (d.edges.x1) r.x1 += dx;
  if (d.edges.x2) r.x2 += dx;
  if (d.edges.y1) r.y1 += dy;
  if (d.edges.y2) r.y2 += dy;
  return r;
}

function onPointerUp(view, e) {
  if (!drag || drag.view !== view) return;
  const [x, y] = view.t.eventToScreen(e, view.canvas);
  const moved = Math.hypot(x - drag.x0, y - drag.y0) > CLICK_PX;
  const d = drag;
  drag = null;
  preview = null;
  if (d.kind === "box" && moved) {
    const [lo, hi] = view.t.boxFromRect(d.box, draggedRect(d, x - d.x0, y - d.y0), view.index);
    boxes.set(d.side, lo, hi);
  } else if (d.kind === "draw") {
    let rect = { x1: d.x0, y1: d.y0, x2: x, y2: y };
    if (!moved) { // a click places the default in-plane size centred there
      const hw = (DEFAULT_EXTENT_MM[view.t.spec.colL] / 2) * view.t.zoom;
      const hh = (DEFAULT_EXTENT_MM[view.t.spec.rowL] / 2) * view.t.zoom;
      rect = { x1: x - hw, y1: y - hh, x2: x + hw, y2: y + hh };
    }
    const [lo, hi] = view.t.boxFromRect(d.template, rect, view.index);
    boxes.set(state.side, lo, hi);
    setMode("select"); // one box per press of d
  } else if (d.kind === "ruler" && moved) {
    state.rulers.push({ plane: view.plane, index: view.index, a: d.a, b: pointerLps(view, x, y) });
    showRuler();
  } else if (d.kind === "lesion" && moved) {
    const b = pointerLps(view, x, y);
    const centre = d.a.map((v, i) => (v + b[i]) / 2);
    findings.setLesion(state.side, centre, distanceMm(d.a, b));
    setMode("select");
  } else if ((d.kind === "press" || d.kind === "box") && !moved) {
    // a click navigates the other views there; inside the other side's box it also selects that side
    const other = SIDES.find((s) => s !== state.side);
    if (!insideBox(view, boxes.boxes[state.side], x, y) && insideBox(view, boxes.boxes[other], x, y)) setSide(other);
    navigateTo(view.t.screenToVoxel(x, y, view.index), view);
  }
  requestRender();
}

function showRuler() {
  const last = state.rulers[state.rulers.length - 1];
  const el = $("ruler-readout");
  el.textContent = last ? `Ruler ${distanceMm(last.a, last.b).toFixed(1)} mm (${last.plane})` : "";
  el.dataset.mm = last ? String(distanceMm(last.a, last.b)) : "";
  requestRender();
}

/** The HU readout: the voxel under the pointer on any view (kept in ``state.pointer``, so every redraw reads the
 * voxel under it again). */
function hover(view, x, y) {
  state.pointer = { view, x, y };
  const ijk = view.t.screenToVoxel(x, y, view.index).map(Math.round);
  const hu = vol.value(...ijk);
  const el = $("hu");
  if (hu === null) {
    el.textContent = vol.contains(...ijk) ? "HU … (loading)" : "HU —";
    delete el.dataset.hu;
    return;
  }
  const lps = vol.voxelToLps(...ijk);
  el.textContent = `HU ${hu} · (${lps.map((v) => v.toFixed(1)).join(", ")}) mm · [${ijk.join(", ")}]`;
  Object.assign(el.dataset, { hu: String(hu), ijk: ijk.join(","), plane: view.plane });
}

function onWheel(view, e) {
  e.preventDefault();
  state.active = view;
  const [x, y] = view.t.eventToScreen(e, view.canvas);
  if (e.ctrlKey || e.metaKey) {
    view.t.zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, x, y);
    requestRender();
    return;
  }
  hover(view, x, y);
  stepSlice(view, Math.sign(e.deltaY) * (e.shiftKey ? 5 : 1)); // redraws, with the readout
}

// ------------------------------------------------------------------ overlays of each view
function overlay(ctx, view) {
  const shown = { ...boxes.boxes };
  if (preview && preview.kind === "box") shown[preview.side] = preview.box;
  if (evidence) evidence.draw(ctx, view);
  drawBoxes(ctx, view, shown, state.side);
  drawLesions(ctx, view, findings.findings);
  drawRulers(ctx, view, state.rulers);
  drawCrosshair(ctx, view, shared.position);
  if (preview && preview.kind === "line" && preview.view === view) drawLine(ctx, preview.a, preview.b, preview.colour, preview.label);
}

// ------------------------------------------------------------------ keyboard
// the help overlay, from this list (onKey below does what it says)
const KEYS = [
  ["wheel, ↑ ↓", "previous (wheel up, ↑) / next (wheel down, ↓) image of the view under the pointer, in a PACS's order: axial head to feet, coronal front to back, sagittal right to left (PgUp/PgDn: 10, Home/End: first/last)"],
  ["click", "navigate: the other views go to that point"],
  ["drag", "window / level (Shift-drag, right- or middle-drag: pan; Ctrl-wheel, + −: zoom; f: fit)"],
  ["1 … 6", PRESETS.map((p) => `${p.key} ${p.name} ${p.width}/${p.level}`).join(" · ")],
  ["i", "invert the grey scale"],
  ["space", "cine: play the slices of the view under the pointer (fps beside the button)"],
  ["r, l", "select the patient-right / patient-left side (box and findings)"],
  ["s, Esc", "select mode: drag a box's body to move it, an edge or handle to resize it; Esc leaves any mode"],
  ["d", "draw a new box for the selected side on any view (drag; a click places 72×72 mm)"],
  ["[ , ]", "the current axial slice becomes the box's lowest (inferior) / highest (superior) slice (not past its other edge)"],
  ["c, Shift-C", "confirm this box / both boxes"],
  ["u, Ctrl-Z", "undo: back to the box's previous state (repeat to go further back)"],
  ["Shift-U, Ctrl-Y", "redo (also Ctrl-Shift-Z)"],
  ["m", "ruler: drag to measure in mm (Delete removes the last ruler)"],
  ["x, Shift-X", "mark the selected side's lesion (drag across it: centre and diameter) / remove the marker"],
  ["g", "gland of the selected side: seen → not visualised → absent"],
  ["t", "write a comment for the selected side (Esc leaves the text box)"],
  ["Tab, Enter", "reach a version's restore button in the panel (and the other controls) and use it"],
  ["e", "evidence: show / hide where the model looked (the verdict's maps, on their axial slices)"],
  ["n", "next unconfirmed scan"],
  ["?, h", "this help"],
];

function cycleGland() {
  const values = config.glands.map(([v]) => v);
  const now = findings.of(state.side).gland;
  findings.update(state.side, { gland: values[(values.indexOf(now) + 1) % values.length] });
}

function onKey(e) {
  const k = e.key;
  if (e.target.closest("input, textarea, select")) {
    if (k === "Escape") e.target.blur();
    return;
  }
  if (e.target.closest("button, a, summary") && (k === " " || k === "Enter")) return; // activates what has focus
  const view = state.active || views.axial;
  const ctrl = e.ctrlKey || e.metaKey;
  if (k === "ArrowUp" || k === "ArrowDown" || k === "PageUp" || k === "PageDown") {
    // as the wheel (onWheel): down (wheel down, ↓, PgDn) is the next image (downStep), up the previous one
    const step = (k === "ArrowDown" || k === "PageDown" ? 1 : -1) * (k.startsWith("Page") ? 10 : 1);
    stepSlice(view, step);
  } else if (k === "Home") setSlice(downStep(view) > 0 ? 0 : view.depth - 1, view); // the first image
  else if (k === "End") setSlice(downStep(view) > 0 ? view.depth - 1 : 0, view); // the last
  else if (!ctrl && PRESETS.some((p) => p.key === k)) {
    const p = PRESETS.find((q) => q.key === k);
    setWindow(p.level, p.width);
  } else if (k === "r" && !ctrl) setSide("R");
  else if (k === "l" && !ctrl) setSide("L");
  else if (k === "d" && !ctrl) setMode("draw");
  else if (k === "s" && !ctrl) setMode("select");
  else if (k === "m" && !ctrl) setMode("ruler");
  else if (k === "x" && !ctrl) setMode("lesion");
  else if (k === "X" && !ctrl) findings.clearLesion(state.side);
  else if (k === "g" && !ctrl) cycleGland();
  else if (k === "t" && !ctrl) $(`comment-${state.side}`).focus();
  else if (k === "i" && !ctrl) setWindow(state.level, state.width, !state.invert);
  else if (k === " ") toggleCine();
  else if (k === "[") markZ("min");
  else if (k === "]") markZ("max");
  else if (k === "c" && !ctrl) boxes.confirm(state.side);
  else if (k === "C" && !ctrl) { boxes.confirm("R").then(() => boxes.confirm("L")); }
  else if ((k === "u" && !ctrl) || (ctrl && !e.shiftKey && k.toLowerCase() === "z")) boxes.undo(state.side);
  else if ((k === "U" && !ctrl) || (ctrl && k.toLowerCase() === "y") || (ctrl && e.shiftKey && k.toLowerCase() === "z")) {
    boxes.redo(state.side);
  } else if (k === "Delete" || k === "Backspace") { state.rulers.pop(); showRuler(); }
  else if (k === "n" && !ctrl) nextUnconfirmed();
  else if (k === "e" && !ctrl && evidence) setEvidence(!evidence.on);
  else if (k === "f" && !ctrl) { Object.values(views).forEach((v) => v.t.fit()); renderAll(); }
  else if (k === "+" || k === "=") { view.t.zoomAt(1.2, view.t.cssW / 2, view.t.cssH / 2); renderAll(); }
  else if (k === "-") { view.t.zoomAt(1 / 1.2, view.t.cssW / 2, view.t.cssH / 2); renderAll(); }
  else if (k === "?" || (k === "h" && !ctrl)) toggleHelp();
  else if (k === "Escape") {
    const wasHelp = !$("help").hidden;
    toggleHelp(false);
    drag = null;
    preview = null;
    if (!wasHelp && state.mode === "select" && state.rulers.length) { state.rulers = []; showRuler(); }
    setMode("select");
    toggleCine(false);
  } else return;
  e.preventDefault();
}

function toggleHelp(show) {
  const help = $("help");
  help.hidden = show === undefined ? !help.hidden : !show;
}

async function nextUnconfirmed() {
  await Promise.all([boxes.save("R"), boxes.save("L")]);
  const r = await fetch(`/api/series/${config.series_id}/next-unconfirmed/`, { credentials: "same-origin" });
  const data = await r.json();
  if (data.url) location.href = data.url;
  else status("No unconfirmed scans left in this dataset.");
}

function onConflict(side, current, message, kind = "box") {
  const banner = $("conflict");
  banner.hidden = false;
  banner.dataset.side = side;
  banner.dataset.kind = kind;
  // the server says who changed it, in words (you in another tab, or another reader)
  $("conflict-text").textContent = `${side} ${kind}: ${message || "changed meanwhile."} Reload it, or keep yours?`;
}

/** A save found the session ended: say so in words, keep the edit, save it again once signed in (the button, or
 * coming back to this tab). */
function onSignedOut(side, kind = "box") {
  const banner = $("signed-out");
  const what = `${side} ${kind}`; // "R box", "R findings", "R confirm", "R undo"...
  const pending = new Set((banner.dataset.what || "").split(",").filter(Boolean)).add(what);
  banner.dataset.what = [...pending].join(",");
  $("signed-out-text").textContent = `Your session has ended, so your edit (${[...pending].join(", ")}) is not saved; `
    + "it is kept on this page.";
  banner.hidden = false;
}

function retrySignedOut() {
  const banner = $("signed-out");
  if (banner.hidden) return Promise.resolve();
  banner.hidden = true;
  banner.dataset.what = "";
  return Promise.all([boxes.retry(), findings.retry()]);
}

// ------------------------------------------------------------------ evidence
function setEvidence(on, opacity = evidence.opacity) {
  evidence.on = on;
  evidence.opacity = Math.max(0, Math.min(1, opacity));
  const toggle = $("evidence-toggle");
  if (toggle) toggle.checked = on;
  const slider = $("evidence-opacity");
  if (slider) slider.value = String(evidence.opacity);
  requestRender();
}

/** The panel's evidence controls: the toggle, the opacity and one button per map that goes to its slice. */
function bootEvidence() {
  evidence = new EvidenceLayer(config.prediction && config.prediction.evidence);
  const toggle = $("evidence-toggle");
  if (!toggle || !evidence.maps.length) return;
  // the controls give the keyboard back once used (so e, arrows and space act on the viewer again)
  toggle.addEventListener("change", () => { setEvidence(toggle.checked); toggle.blur(); });
  $("evidence-opacity").addEventListener("input", (e) => setEvidence(evidence.on, Number(e.target.value)));
  $("evidence-opacity").addEventListener("change", (e) => e.target.blur());
  $("evidence-list").replaceChildren(...evidence.maps.map((m) => {
    const b = document.createElement("button");
    b.className = "vw-small";
    b.textContent = `${m.side} · z ${Number(m.z_mm).toFixed(1)} mm · p ${Number(m.probability).toFixed(2)}`;
    b.title = "go to this map's slice";
    b.addEventListener("click", () => { setEvidence(true); setSlice(axialSliceOfZ(m.z_mm)); });
    return b;
  }));
}

// ------------------------------------------------------------------ start
/** The axial slice index nearest LPS z (mm). */
function axialSliceOfZ(z) {
  const c = vol.voxelToLps(...shared.position);
  c[2] = z;
  return views.axial.t.sliceOf(c);
}

/** The voxel to open at: in-plane at the first box's centre and at the boxes' mean level (else the middle);
 * ``?z_mm=`` sets the axial slice. */
function initialPosition(header) {
  const [nk, nj, ni] = header.shape;
  const t = new ViewTransform(header.affine, header.shape, "axial");
  const position = [ni >> 1, nj >> 1, nk >> 1];
  const shown = SIDES.map((s) => config.boxes.boxes[s]).filter((b) => b && b.lps_min);
  const centreOf = (b) => b.lps_min.map((v, a) => (v + b.lps_max[a]) / 2);
  const clampAll = (ijk) => { for (let a = 0; a < 3; a++) position[a] = clampIndex(ijk[a], [ni, nj, nk][a]); };
  if (shown.length) {
    const c = centreOf(shown[0]);
    c[2] = shown.map(centreOf).reduce((sum, b) => sum + b[2], 0) / shown.length;
    clampAll(lpsToVoxel(t.inverse, c));
  }
  if (config.z_mm !== null && config.z_mm !== undefined) {
    const c = voxelToLps(header.affine, position);
    c[2] = config.z_mm;
    position[t.fixed] = t.sliceOf(c);
  }
  return position;
}

async function boot() {
  const header = config.volume;
  if (!header) { $("loading").textContent = "This series has no volume yet."; return; }
  shared.position = initialPosition(header);
  const t0 = performance.now();
  let firstShown = false;
  const stream = streamVolume(header, {
    firstK: shared.position[2],
    onSlab: () => {
      $("loading").textContent = `Loading volume… ${Math.round((100 * vol.slabsLoaded) / header.slabs.count)}%`;
      const ax = views.axial;
      if (!firstShown && ax && (ax.t.fixed !== 2 ? vol.complete : vol.loaded[ax.index])) {
        firstShown = true;
        renderAll();
        window.viewer.firstImageMs = performance.now(); // since navigation start
        window.viewer.firstImageAfterScriptMs = performance.now() - t0;
        document.body.dataset.firstImage = "1";
      } else requestRender();
    },
  });
  vol = stream.volume;
  boxes = new BoxStore(config.series_id, config.boxes, { onChange: onStoreChange, onConflict, onStatus: status, onSignedOut });
  findings = new FindingStore(config.series_id, config.findings, { onChange: onStoreChange, onConflict, onStatus: status,
    onSignedOut });
  corner = new CornerOverlay(header.series);
  for (const plane of ["axial", "coronal", "sagittal"]) {
    const view = new SliceView($(plane), vol, plane, shared, { onResize: () => requestRender() });
    view.overlays.push(overlay);
    view.canvas.addEventListener("pointerdown", (e) => onPointerDown(view, e));
    view.canvas.addEventListener("pointermove", (e) => onPointerMove(view, e));
    view.canvas.addEventListener("pointerup", (e) => onPointerUp(view, e));
    view.canvas.addEventListener("pointercancel", () => { drag = null; preview = null; requestRender(); });
    view.canvas.addEventListener("wheel", (e) => onWheel(view, e), { passive: false });
    view.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    view.canvas.addEventListener("pointerenter", () => { state.active = view; });
    view.canvas.addEventListener("pointerleave", () => { if (state.pointer && state.pointer.view === view) state.pointer = null; });
    views[plane] = view;
  }
  panel = new Panel(config, {
    restoreBox: (side, v) => boxes.restore(side, v),
    restoreFinding: (side, v) => findings.restore(side, v),
    setGland: (side, value) => findings.update(side, { gland: value }),
    setComment: (side, text) => findings.update(side, { comment: text }),
    clearLesion: (side) => findings.clearLesion(side),
    selectSide: (side) => setSide(side),
  });
  if (config.prediction && config.prediction.slice_scores && config.prediction.slice_scores.length && $("strip")) {
    const ax = views.axial;
    strip = new VerdictStrip($("strip"), config.prediction, [ax.t.sliceMm(0), ax.t.sliceMm(ax.depth - 1)],
      (z) => setSlice(axialSliceOfZ(z)));
  }
  bootEvidence();
  fillHelp(KEYS);
  $("preset").replaceChildren(...PRESETS.map((p) => Object.assign(document.createElement("option"),
    { value: p.key, textContent: `${p.key} ${p.name}` })), Object.assign(document.createElement("option"),
    { value: "", textContent: "custom", disabled: true }));
  $("preset").addEventListener("change", (e) => {
    const p = PRESETS.find((q) => q.key === e.target.value);
    if (p) setWindow(p.level, p.width);
    e.target.blur();
  });
  document.addEventListener("keydown", onKey);
  // a toolbar button gives the keyboard back once clicked (so space plays cine rather than clicking it again)
  document.querySelector(".vw-bar").addEventListener("click", (e) => { const b = e.target.closest("button"); if (b) b.blur(); });
  $("invert").addEventListener("click", () => setWindow(state.level, state.width, !state.invert));
  for (const [mode, id] of Object.entries(MODES)) $(id).addEventListener("click", () => setMode(mode));
  $("side-R").addEventListener("click", () => setSide("R"));
  $("side-L").addEventListener("click", () => setSide("L"));
  $("confirm").addEventListener("click", () => boxes.confirm(state.side));
  $("undo").addEventListener("click", () => boxes.undo(state.side));
  $("redo").addEventListener("click", () => boxes.redo(state.side));
  $("cine").addEventListener("click", () => toggleCine());
  $("next").addEventListener("click", nextUnconfirmed);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("help-close").addEventListener("click", () => toggleHelp(false));
  $("conflict-reload").addEventListener("click", () => {
    const { side, kind } = $("conflict").dataset;
    (kind === "findings" ? findings : boxes).reload(side);
    $("conflict").hidden = true;
  });
  $("conflict-keep").addEventListener("click", () => {
    const { side, kind } = $("conflict").dataset;
    (kind === "findings" ? findings : boxes).overwrite(side);
    $("conflict").hidden = true;
  });
  window.addEventListener("beforeunload", () => { boxes.save("R"); boxes.save("L"); });
  $("signed-out-retry").addEventListener("click", retrySignedOut);
  window.addEventListener("focus", () => retrySignedOut()); // back from signing in in another tab
  setWindow(40, 400, false);
  setMode("select");
  setSide("R");
  window.viewer = Object.assign(window.viewer || {}, {
    vol, views, boxes, store: boxes, findings, state, shared, setSlice, setWindow, renderAll, setMode, setSide,
    navigateTo, evidence, setEvidence: (on, opacity) => setEvidence(on, opacity),
    sliceZ: (k) => views.axial.t.sliceMm(k),
    axialSliceOfZ,
    /** Mean and max milliseconds of ``n`` synchronous axial slice changes (all three views redrawn). */
    benchSliceChange(n = 100) {
      const times = [];
      for (let s = 0; s < n; s++) times.push(setSlice((views.axial.index + 1) % views.axial.depth));
      return { mean: times.reduce((a, b) => a + b, 0) / n, max: Math.max(...times) };
    },
  });
  await stream.done;
  $("loading").hidden = true;
  renderAll();
  window.viewer.loadMs = performance.now() - t0;
  window.viewer.ready = true;
  document.body.dataset.viewerReady = "1";
}

window.viewer = {};
boot().catch((err) => { $("loading").hidden = false; $("loading").textContent = `Could not load the viewer: ${err.message}`; throw err; });
