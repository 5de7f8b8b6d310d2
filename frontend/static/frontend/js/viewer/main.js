// The CT viewer page: loads the volume once, windows it in the browser, and edits both crop boxes.
import { BoxStore, DEFAULT_SIZE_MM } from "./boxes.js";
import { SliceView, windowLut } from "./view.js";
import { loadVolume } from "./volume.js";

const PRESETS = { 1: ["abdomen", 40, 400], 2: ["model", 100, 600], 3: ["bone", 400, 1800] };
const COLOURS = { R: "#4fc3f7", L: "#ff8a65" };
const DEFAULT_HALF_Z_MM = 30;
const HANDLE_PX = 7;

const config = JSON.parse(document.getElementById("viewer-config").textContent);
const $ = (id) => document.getElementById(id);
const state = { level: 40, width: 400, side: "R", drawing: false, lutVersion: 0, active: null };
const shared = { lut: windowLut(40, 400), position: [0, 0, 0] };
let vol = null;
let views = {};
let store = null;

function status(text) { $("save-status").textContent = text; }

// ------------------------------------------------------------------ rendering
function renderAll() {
  for (const v of Object.values(views)) {
    const refill = v.lastIndex !== v.index || v.lutVersion !== state.lutVersion;
    v.render(refill);
    v.lastIndex = v.index;
    v.lutVersion = state.lutVersion;
  }
  drawStrip();
  updatePanel();
}

/** Change the axial slice; returns the milliseconds the synchronous render took. */
function setSlice(k) {
  k = Math.max(0, Math.min(nSlices() - 1, Math.round(k)));
  shared.position[axialAxis()] = k;
  const t0 = performance.now();
  renderAll();
  return performance.now() - t0;
}

function setWindow(level, width) {
  state.level = Math.round(level);
  state.width = Math.max(1, Math.round(width));
  windowLut(state.level, state.width, shared.lut);
  state.lutVersion++;
  $("wl").textContent = `W ${state.width} / L ${state.level}`;
  renderAll();
}

/** The voxel axis the axial view slices (k for axially stored volumes), its length, and the current index. */
function axialAxis() { return views.axial ? views.axial.p.fixed : 2; }

function nSlices() { return [vol.ni, vol.nj, vol.nk][axialAxis()]; }

function sliceIndex() { return shared.position[axialAxis()]; }

/** LPS z of axial slice ``k``. */
function sliceZ(k) {
  const ijk = [0, 0, 0];
  ijk[axialAxis()] = k;
  return vol.voxelToLps(...ijk)[2];
}

function kOfZ(z) {
  const origin = vol.voxelToLps(0, 0, 0);
  return Math.round(vol.lpsToVoxel(origin[0], origin[1], z)[axialAxis()]);
}

// ------------------------------------------------------------------ box overlays and hit tests
function rectOf(view, box) {
  const [h1, v1] = view.lpsToMm(box.lps_min);
  const [h2, v2] = view.lpsToMm(box.lps_max);
  const [x1, y1] = view.mmToCanvas(Math.min(h1, h2), Math.min(v1, v2));
  const [x2, y2] = view.mmToCanvas(Math.max(h1, h2), Math.max(v1, v2));
  return { x1: Math.min(x1, x2), y1: Math.min(y1, y2), x2: Math.max(x1, x2), y2: Math.max(y1, y2) };
}

/** Box from a canvas rectangle in ``view``, keeping the coordinate the view does not show. */
function boxFromRect(view, box, r) {
  const [hA, vA] = view.canvasToMm(r.x1, r.y1);
  const [hB, vB] = view.canvasToMm(r.x2, r.y2);
  const lo = [...box.lps_min];
  const hi = [...box.lps_max];
  const cAx = view.p.col[1];
  const [, rAx, sign] = view.p.row;
  lo[cAx] = Math.min(hA, hB); hi[cAx] = Math.max(hA, hB);
  const va = sign * vA;
  const vb = sign * vB;
  lo[rAx] = Math.min(va, vb); hi[rAx] = Math.max(va, vb);
  return [lo, hi];
}

function inSlice(view, box) {
  const pos = vol.voxelToLps(...shared.position);
  const axis = view.p.fixedL;
  return pos[axis] >= box.lps_min[axis] - 1e-6 && pos[axis] <= box.lps_max[axis] + 1e-6;
}

function drawBoxes(ctx, view) {
  for (const side of ["R", "L"]) {
    const box = dragPreview && dragPreview.side === side ? dragPreview.box : store.boxes[side];
    if (!box || !box.lps_min) continue;
    const r = rectOf(view, box);
    ctx.save();
    ctx.globalAlpha = inSlice(view, box) ? 1 : 0.35;
    ctx.strokeStyle = COLOURS[side];
    ctx.lineWidth = side === state.side ? 2 : 1.25;
    ctx.setLineDash(box.status === "confirmed" ? [] : [6, 4]);
    ctx.strokeRect(r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1);
    ctx.setLineDash([]);
    ctx.fillStyle = COLOURS[side];
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "bottom";
    ctx.fillText(`${side}${box.status === "confirmed" ? " ✓" : ""}`, r.x1 + 2, r.y1 - 2);
    if (side === state.side && inSlice(view, box)) {
      for (const [x, y] of handlePoints(r)) ctx.fillRect(x - 3, y - 3, 6, 6);
    }
    ctx.restore();
  }
}

function handlePoints(r) {
  const mx = (r.x1 + r.x2) / 2;
  const my = (r.y1 + r.y2) / 2;
  return [[r.x1, r.y1], [mx, r.y1], [r.x2, r.y1], [r.x2, my], [r.x2, r.y2], [mx, r.y2], [r.x1, r.y2], [r.x1, my]];
}

/** What a pointer at (x, y) would grab: {side, edges: {x1, x2, y1, y2} | "move"} or null. */
function hit(view, x, y) {
  const order = [state.side, state.side === "R" ? "L" : "R"];
  for (const side of order) {
    const box = store.boxes[side];
    if (!box || !box.lps_min || !inSlice(view, box)) continue;
    const r = rectOf(view, box);
    const near = (a, b) => Math.abs(a - b) <= HANDLE_PX;
    const within = x >= r.x1 - HANDLE_PX && x <= r.x2 + HANDLE_PX && y >= r.y1 - HANDLE_PX && y <= r.y2 + HANDLE_PX;
    if (!within) continue;
    const edges = { x1: near(x, r.x1), x2: near(x, r.x2), y1: near(y, r.y1), y2: near(y, r.y2) };
    if (edges.x1 || edges.x2 || edges.y1 || edges.y2) return { side, edges, rect: r };
    if (x > r.x1 && x < r.x2 && y > r.y1 && y < r.y2) return { side, edges: "move", rect: r };
  }
  return null;
}

/** The other views' positions: dashed lines on coronal and sagittal, edge ticks on the axial view. */
function drawCrosshair(ctx, view) {
  const [x, y] = view.voxelToCanvas(shared.position);
  ctx.save();
  ctx.strokeStyle = "rgba(255, 235, 59, .55)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  if (view.plane === "axial") {
    ctx.moveTo(x, 0); ctx.lineTo(x, 12); ctx.moveTo(x, view.cssH - 12); ctx.lineTo(x, view.cssH);
    ctx.moveTo(0, y); ctx.lineTo(12, y); ctx.moveTo(view.cssW - 12, y); ctx.lineTo(view.cssW, y);
  } else {
    ctx.setLineDash([4, 4]);
    ctx.moveTo(0, y); ctx.lineTo(view.cssW, y);
    ctx.moveTo(x, 0); ctx.lineTo(x, view.cssH);
  }
  ctx.stroke();
  ctx.restore();
}

// ------------------------------------------------------------------ pointer interaction
let drag = null;
let dragPreview = null;

function local(view, e) {
  const r = view.canvas.getBoundingClientRect();
  return [e.clientX - r.left, e.clientY - r.top];
}

function onPointerDown(view, e) {
  state.active = view;
  const [x, y] = local(view, e);
  view.canvas.setPointerCapture(e.pointerId);
  const grabbed = e.button === 0 && !e.shiftKey ? hit(view, x, y) : null;
  if (grabbed) {
    setSide(grabbed.side);
    drag = { kind: "box", view, x0: x, y0: y, ...grabbed, box: { ...store.boxes[grabbed.side] } };
  } else if (e.button === 0 && state.drawing && view.plane === "axial") {
    drag = { kind: "draw", view, x0: x, y0: y };
  } else if (e.button === 1 || e.button === 2 || e.shiftKey) {
    drag = { kind: "pan", view, x0: x, y0: y, lx: x, ly: y };
  } else if (e.button === 0 && view.plane !== "axial" && !e.altKey) {
    drag = { kind: "point", view, x0: x, y0: y, lx: x, ly: y, level: state.level, width: state.width };
  } else {
    drag = { kind: "window", view, x0: x, y0: y, level: state.level, width: state.width };
  }
  e.preventDefault();
}

function onPointerMove(view, e) {
  const [x, y] = local(view, e);
  if (!drag) {
    const h = hit(view, x, y);
    view.canvas.style.cursor = state.drawing && view.plane === "axial" ? "crosshair"
      : !h ? "default" : h.edges === "move" ? "move" : "nwse-resize";
    return;
  }
  const dx = x - drag.x0;
  const dy = y - drag.y0;
  if (drag.kind === "window" || (drag.kind === "point" && Math.hypot(dx, dy) > 4)) {
    drag.kind = "window";
    setWindow(drag.level - dy * 2, drag.width + dx * 4);
  } else if (drag.kind === "pan") {
    view.panBy(x - drag.lx, y - drag.ly);
    drag.lx = x; drag.ly = y;
    renderAll();
  } else if (drag.kind === "box") {
    const r = { ...drag.rect };
    if (drag.edges === "move") {
      r.x1 += dx; r.x2 += dx; r.y1 += dy; r.y2 += dy;
    } else {
      if (drag.edges.x1) r.x1 += dx;
      if (drag.edges.x2) r.x2 += dx;
      if (drag.edges.y1) r.y1 += dy;
      if (drag.edges.y2) r.y2 += dy;
    }
    const [lo, hi] = boxFromRect(view, drag.box, r);
    dragPreview = { side: drag.side, box: { ...drag.box, lps_min: lo, lps_max: hi } };
    renderAll();
  } else if (drag.kind === "draw") {
    const box = newBoxTemplate();
    const [lo, hi] = boxFromRect(view, box, { x1: drag.x0, y1: drag.y0, x2: x, y2: y });
    dragPreview = { side: state.side, box: { ...box, lps_min: lo, lps_max: hi } };
    renderAll();
  }
}

function onPointerUp(view, e) {
  if (!drag) return;
  const [x, y] = local(view, e);
  const moved = Math.hypot(x - drag.x0, y - drag.y0) > 3;
  if (drag.kind === "box" && dragPreview) {
    store.set(drag.side, dragPreview.box.lps_min, dragPreview.box.lps_max);
  } else if (drag.kind === "draw") {
    const box = newBoxTemplate();
    let lo;
    let hi;
    if (moved) {
      [lo, hi] = boxFromRect(view, box, { x1: drag.x0, y1: drag.y0, x2: x, y2: y });
    } else { // a click places the default 72 x 72 mm box centred there
      const [h, v] = view.canvasToMm(x, y);
      const half = (DEFAULT_SIZE_MM / 2) * view.zoom;
      [lo, hi] = boxFromRect(view, box, { x1: x - half, y1: y - half, x2: x + half, y2: y + half });
      void h; void v;
    }
    state.drawing = false;
    $("draw").classList.remove("primary");
    store.set(state.side, lo, hi);
  } else if (drag.kind === "point" && !moved) {
    // a click on coronal/sagittal moves the axial slice (and the other view) there
    const ijk = view.canvasToVoxel(x, y);
    const dims = [vol.ni, vol.nj, vol.nk];
    for (const a of [0, 1, 2]) if (a !== axialAxis()) shared.position[a] = clampIndex(ijk[a], dims[a]);
    setSlice(ijk[axialAxis()]);
  }
  drag = null;
  dragPreview = null;
  renderAll();
}

function clampIndex(v, n) { return Math.max(0, Math.min(n - 1, Math.round(v))); }

/** The active side's current box, or a new one spanning the default z-range around the current slice. */
function newBoxTemplate() {
  const existing = store.boxes[state.side];
  if (existing && existing.lps_min) return { ...existing };
  const z = sliceZ(sliceIndex());
  const zs = [sliceZ(0), sliceZ(nSlices() - 1)];
  const zlo = Math.max(Math.min(...zs), z - DEFAULT_HALF_Z_MM);
  const zhi = Math.min(Math.max(...zs), z + DEFAULT_HALF_Z_MM);
  return { side: state.side, status: "proposed", version: 0, lps_min: [0, 0, zlo], lps_max: [0, 0, zhi] };
}

function onWheel(view, e) {
  e.preventDefault();
  const [x, y] = local(view, e);
  if (e.ctrlKey || e.metaKey) {
    view.zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, x, y);
    renderAll();
    return;
  }
  const step = Math.sign(e.deltaY) * (e.shiftKey ? 5 : 1);
  if (view.plane === "axial") setSlice(sliceIndex() + step);
  else {
    const axis = view.p.fixed;
    shared.position[axis] = clampIndex(shared.position[axis] + step, [vol.ni, vol.nj, vol.nk][axis]);
    renderAll();
  }
}

// ------------------------------------------------------------------ keyboard
function markZ(which) {
  const box = store.boxes[state.side];
  if (!box || !box.lps_min) { status(`${state.side}: draw the box first (d)`); return; }
  const z = sliceZ(sliceIndex());
  const lo = [...box.lps_min];
  const hi = [...box.lps_max];
  if (which === "min") lo[2] = z; else hi[2] = z;
  store.set(state.side, lo, hi);
}

function setSide(side) {
  state.side = side;
  for (const s of ["R", "L"]) $(`side-${s}`).classList.toggle("primary", s === side);
  renderAll();
}

async function nextUnconfirmed() {
  await Promise.all([store.save("R"), store.save("L")]);
  const r = await fetch(`/api/series/${config.series_id}/next-unconfirmed/`, { credentials: "same-origin" });
  const data = await r.json();
  if (data.url) location.href = data.url;
  else status("No unconfirmed scans left in this dataset.");
}

function toggleHelp(show) {
  const help = $("help");
  help.hidden = show === undefined ? !help.hidden : !show;
}

function onKey(e) {
  if (e.target.closest("input, textarea, select")) return;
  const view = state.active || views.axial;
  const k = e.key;
  if (k === "ArrowUp" || k === "ArrowDown" || k === "PageUp" || k === "PageDown") {
    const step = (k === "ArrowUp" || k === "PageUp" ? 1 : -1) * (k.startsWith("Page") ? 10 : 1);
    if (view.plane === "axial") setSlice(sliceIndex() + step);
    else {
      const axis = view.p.fixed;
      shared.position[axis] = clampIndex(shared.position[axis] + step, [vol.ni, vol.nj, vol.nk][axis]);
      renderAll();
    }
  } else if (PRESETS[k]) {
    setWindow(PRESETS[k][1], PRESETS[k][2]);
  } else if (k === "r") setSide("R");
  else if (k === "l") setSide("L");
  else if (k === "d") toggleDraw();
  else if (k === "[") markZ("min");
  else if (k === "]") markZ("max");
  else if (k === "c") store.confirm(state.side);
  else if (k === "C") { store.confirm("R").then(() => store.confirm("L")); }
  else if (k === "u" || ((e.ctrlKey || e.metaKey) && k === "z")) store.undo(state.side);
  else if (k === "n") nextUnconfirmed();
  else if (k === "f") { Object.values(views).forEach((v) => v.fit()); renderAll(); }
  else if (k === "+" || k === "=") { view.zoomAt(1.2, view.cssW / 2, view.cssH / 2); renderAll(); }
  else if (k === "-") { view.zoomAt(1 / 1.2, view.cssW / 2, view.cssH / 2); renderAll(); }
  else if (k === "?" || k === "h") toggleHelp();
  else if (k === "Escape") { toggleHelp(false); state.drawing = false; $("draw").classList.remove("primary"); }
  else return;
  e.preventDefault();
}

function toggleDraw() {
  state.drawing = !state.drawing;
  $("draw").classList.toggle("primary", state.drawing);
  status(state.drawing ? `Draw the ${state.side} box on the axial view (drag, or click for ${DEFAULT_SIZE_MM}×${DEFAULT_SIZE_MM} mm)` : "");
}

// ------------------------------------------------------------------ score strip, side panel, conflicts
function drawStrip() {
  const canvas = $("strip");
  const pred = config.prediction;
  if (!canvas || !pred || !pred.slice_scores || !pred.slice_scores.length) return;
  const r = canvas.getBoundingClientRect();
  canvas.width = r.width;
  canvas.height = r.height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, r.width, r.height);
  const zs = [sliceZ(0), sliceZ(nSlices() - 1)];
  const ztop = Math.max(...zs);
  const zbot = Math.min(...zs);
  const yOf = (z) => ((ztop - z) / Math.max(ztop - zbot, 1e-6)) * (r.height - 1);
  const flagged = new Set((pred.flagged_slices_mm || []).map((z) => z.toFixed(2)));
  const bar = Math.max(2, (r.height / nSlices()) * 0.8);
  for (const [z, p] of pred.slice_scores) {
    ctx.fillStyle = flagged.has(Number(z).toFixed(2)) || p >= 0.5 ? "#e5533d" : "#6fbf73";
    ctx.fillRect(0, yOf(z) - bar / 2, Math.max(1, p * r.width), bar);
  }
  const y = yOf(sliceZ(sliceIndex()));
  ctx.strokeStyle = "#ffeb3b";
  ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(r.width, y); ctx.stroke();
}

function onStripClick(e) {
  const r = e.currentTarget.getBoundingClientRect();
  const zs = [sliceZ(0), sliceZ(nSlices() - 1)];
  const ztop = Math.max(...zs);
  const zbot = Math.min(...zs);
  const z = ztop - ((e.clientY - r.top) / r.height) * (ztop - zbot);
  setSlice(kOfZ(z));
}

function fmtBox(box) {
  if (!box || !box.lps_min) return "—";
  const s = box.lps_min.map((v, a) => (box.lps_max[a] - v).toFixed(0));
  const who = box.updated_by ? ` · ${box.updated_by}` : "";
  const when = box.updated_at ? ` ${new Date(box.updated_at).toLocaleString()}` : "";
  return `${s[0]}×${s[1]}×${s[2]} mm · ${box.status} · v${box.version}${who}${when}${box.dirty ? " (unsaved)" : ""}`;
}

function updatePanel() {
  const badge = $("series-status");
  const boxes = ["R", "L"].map((s) => store.boxes[s]).filter((b) => b && b.lps_min);
  if (badge && boxes.length && badge.dataset.status !== "not_covered") {
    const value = boxes.length === 2 && boxes.every((b) => b.status === "confirmed" && !b.dirty) ? "confirmed" : "proposed";
    badge.className = `badge ${value}`;
    badge.textContent = value === "confirmed" ? "Confirmed" : "Proposed";
  }
  for (const side of ["R", "L"]) {
    const el = $(`box-${side}`);
    if (el) el.textContent = fmtBox(store.boxes[side]);
  }
}

function onConflict(side, current, message) {
  const banner = $("conflict");
  banner.hidden = false;
  banner.dataset.side = side;
  $("conflict-text").textContent = `${side} box: ${message || "changed by someone else"}`
    + (current && current.updated_by ? ` (by ${current.updated_by})` : "") + ". Reload it, or keep yours?";
}

// ------------------------------------------------------------------ start
async function start() {
  if (!config.volume) { $("loading").textContent = "This series has no volume yet."; return; }
  const t0 = performance.now();
  vol = await loadVolume(config.volume, (f) => { $("loading").textContent = `Loading volume… ${Math.round(f * 100)}%`; });
  $("loading").hidden = true;
  shared.position = [vol.ni >> 1, vol.nj >> 1, vol.nk >> 1];
  store = new BoxStore(config.series_id, config.boxes, {
    onChange: renderAll, onConflict, onStatus: status,
  });
  for (const plane of ["axial", "coronal", "sagittal"]) {
    const view = new SliceView($(plane), vol, plane, shared);
    view.overlays.push(drawBoxes, drawCrosshair);
    view.canvas.addEventListener("pointerdown", (e) => onPointerDown(view, e));
    view.canvas.addEventListener("pointermove", (e) => onPointerMove(view, e));
    view.canvas.addEventListener("pointerup", (e) => onPointerUp(view, e));
    view.canvas.addEventListener("wheel", (e) => onWheel(view, e), { passive: false });
    view.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    view.canvas.addEventListener("pointerenter", () => { state.active = view; });
    views[plane] = view;
  }
  if (config.z_mm !== null && config.z_mm !== undefined) {
    shared.position[axialAxis()] = Math.max(0, Math.min(nSlices() - 1, kOfZ(config.z_mm)));
  }
  window.addEventListener("resize", () => { Object.values(views).forEach((v) => { v.resize(); v.fit(); v.lutVersion = -1; }); renderAll(); });
  document.addEventListener("keydown", onKey);
  for (const [key, [name, level, width]] of Object.entries(PRESETS)) {
    $(`preset-${name}`).addEventListener("click", () => setWindow(level, width));
    void key;
  }
  $("side-R").addEventListener("click", () => setSide("R"));
  $("side-L").addEventListener("click", () => setSide("L"));
  $("draw").addEventListener("click", toggleDraw);
  $("confirm").addEventListener("click", () => store.confirm(state.side));
  $("undo").addEventListener("click", () => store.undo(state.side));
  $("next").addEventListener("click", nextUnconfirmed);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("conflict-reload").addEventListener("click", () => { store.reload($("conflict").dataset.side); $("conflict").hidden = true; });
  $("conflict-keep").addEventListener("click", () => { store.overwrite($("conflict").dataset.side); $("conflict").hidden = true; });
  if ($("strip")) $("strip").addEventListener("click", onStripClick);
  window.addEventListener("beforeunload", () => { store.save("R"); store.save("L"); });
  setWindow(40, 400);
  setSide("R");
  window.viewer = {
    vol, views, store, state, shared, setSlice, setWindow, renderAll, sliceZ,
    loadMs: performance.now() - t0,
    /** Mean and max milliseconds of ``n`` synchronous axial slice changes. */
    benchSliceChange(n = 100) {
      const times = [];
      for (let s = 0; s < n; s++) times.push(setSlice((sliceIndex() + 1) % nSlices()));
      return { mean: times.reduce((a, b) => a + b, 0) / n, max: Math.max(...times) };
    },
    ready: true,
  };
  document.body.dataset.viewerReady = "1";
}

start().catch((err) => { $("loading").hidden = false; $("loading").textContent = `Could not load the viewer: ${err.message}`; throw err; });
