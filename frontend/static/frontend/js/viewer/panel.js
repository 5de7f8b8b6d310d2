// The viewer's text: the side panel (both sides' boxes and findings, the selected side's versions with
// restore), the corner overlay of the axial view and the help overlay. Everything from users or DICOM headers
// is written as text (textContent, text nodes, element values), never as markup.

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

// As every page of the site writes a time (Django's "Y-m-d H:i", TIME_ZONE UTC): "2026-12-07 15:29", never the
// browser's locale ("12/7/26" reads as 12 July in the UK), so the panel and the job and import pages agree.
const when = (iso) => {
  const d = iso ? new Date(iso) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toISOString().slice(0, 16).replace("T", " ") : "";
};
const mm = (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(1)}`);

export function fmtBox(box) {
  if (!box || !box.lps_min) return "no box";
  const s = box.lps_min.map((v, a) => (box.lps_max[a] - v).toFixed(0));
  const who = box.updated_by ? ` · ${box.updated_by}` : "";
  return `${s[0]}×${s[1]}×${s[2]} mm · ${box.status} · v${box.version}${who} ${when(box.updated_at)}${box.dirty ? " (unsaved)" : ""}`;
}

/** Where a side's box came from, or why it has none: "proposed by atlas registration, confidence 0.82 · placed
 * for a mass ...", "not covered: the scan ends 170 mm below ...". ``uncovered``: the scan's uncovered_sides. */
export function fmtProvenance(box, uncovered, side) {
  if (box && box.lps_min) return [box.provenance, box.note].filter(Boolean).join(" · ");
  const note = (uncovered || {})[side];
  return note ? `not covered: ${note}` : "";
}

export function fmtLesion(f) {
  if (!f || !f.lesion_diameter_mm) return "none marked";
  const c = f.lesion_centre_lps;
  return `${f.lesion_diameter_mm.toFixed(1)} mm at (${mm(c[0])}, ${mm(c[1])}, ${mm(c[2])}) mm`;
}

export class Panel {
  /** ``actions``: {restoreBox(side, v), restoreFinding(side, v), setGland(side, value), setComment(side, text),
   * clearLesion(side), selectSide(side)}. */
  constructor(config, actions) {
    this.actions = actions;
    this.glands = config.glands;
    for (const side of ["R", "L"]) {
      const select = $(`gland-${side}`);
      select.replaceChildren(...this.glands.map(([value, label]) => h("option", { value }, label)));
      select.addEventListener("change", () => actions.setGland(side, select.value));
      const comment = $(`comment-${side}`);
      comment.maxLength = config.max_comment_chars;
      comment.addEventListener("change", () => actions.setComment(side, comment.value));
      $(`lesion-clear-${side}`).addEventListener("click", () => actions.clearLesion(side));
      $(`side-panel-${side}`).addEventListener("click", (e) => {
        if (!e.target.closest("select, textarea, button")) actions.selectSide(side);
      });
    }
  }

  /** Refresh both sides and the selected side's version lists. */
  update(boxes, findings, side) {
    for (const s of ["R", "L"]) {
      $(`side-panel-${s}`).classList.toggle("selected", s === side);
      $(`box-${s}`).textContent = fmtBox(boxes.boxes[s]);
      $(`box-why-${s}`).textContent = fmtProvenance(boxes.boxes[s], boxes.uncovered_sides, s);
      const f = findings.of(s);
      const select = $(`gland-${s}`);
      if (document.activeElement !== select) select.value = f.gland;
      $(`lesion-${s}`).textContent = fmtLesion(f);
      $(`lesion-clear-${s}`).hidden = !f.lesion_diameter_mm;
      const comment = $(`comment-${s}`);
      if (document.activeElement !== comment) comment.value = f.comment || "";
      $(`finding-version-${s}`).textContent = f.version
        ? `findings v${f.version}${f.updated_by ? ` · ${f.updated_by}` : ""} ${when(f.updated_at)}` : "no findings recorded";
    }
    const box = boxes.boxes[side];
    $("undo").disabled = !box || !box.undo_to;
    $("redo").disabled = !box || !box.redo_to;
    $("versions-title").textContent = `${side} box versions`;
    this.versionList($("box-versions"), boxes.history[side], box && box.version, (v) => this.actions.restoreBox(side, v),
      (item) => [item.action, item.change]);
    $("finding-versions-title").textContent = `${side} findings versions`;
    this.versionList($("finding-versions"), findings.history[side], findings.of(side).version,
      (v) => this.actions.restoreFinding(side, v), (item) => ["", item.change]);
  }

  versionList(list, items, current, restore, describe) {
    list.replaceChildren(...(items || []).map((item) => {
      const [action, change] = describe(item);
      const li = h("li", { dataset: { version: item.version }, class: item.version === current ? "current" : "" },
        h("strong", {}, `v${item.version}`), ` · ${item.updated_by || "system"} · ${when(item.updated_at)}`,
        h("br"), h("span", { class: "muted" }, action && action !== "edit" && !change.startsWith(action) ? `${action}: ${change}` : change));
      if (item.version !== current) {
        li.append(" ", h("button", { class: "vw-restore", title: "save this version again as the current one",
          onclick: () => restore(item.version) }, "restore"));
      }
      return li;
    }));
    if (!items || !items.length) list.replaceChildren(h("li", { class: "muted" }, "none yet"));
  }
}

/** The axial view's corner overlay: who and what (top), where and how it is shown (bottom). */
export class CornerOverlay {
  constructor(info) {
    const i = info || {};
    const lines = (id, ...rows) => $(id).replaceChildren(...rows.filter(Boolean).map((r) => h("div", {}, r)));
    lines("ov-tl", i.patient && h("strong", {}, i.patient), i.study_date && `Study ${i.study_date}`, i.study_description);
    lines("ov-tr", i.series_description || "(no series description)",
      i.series_number !== null && i.series_number !== undefined ? `Series ${i.series_number}` : null,
      i.kernel ? `Kernel ${i.kernel}` : "Kernel —", i.kvp ? `${i.kvp} kVp` : null, i.manufacturer, i.contrast && `Contrast ${i.contrast}`);
    this.thickness = i.slice_thickness_mm;
    this.spacing = i.slice_spacing_mm;
  }

  /** ``number``: the slice's image number in the order a PACS lists axial images (1 the most superior). */
  update({ z, number, depth, step, level, width, invert, zoom }) {
    if (!this.slice) { // text nodes made once; a slice change only sets their text
      const thick = this.thickness ? `${Number(this.thickness).toFixed(2)} mm` : "—";
      this.slice = h("div", { id: "ov-slice" });
      this.thick = h("div", {});
      $("ov-bl").replaceChildren(this.slice, this.thick);
      this.thickText = (s) => `Thickness ${thick} · step ${s.toFixed(2)} mm`;
      this.wl = $("ov-wl");
    }
    this.slice.textContent = `z ${z.toFixed(1)} mm · slice ${number}/${depth}`;
    this.thick.textContent = this.thickText(step);
    this.wl.textContent = `W ${width} L ${level}${invert ? " · inverted" : ""} · ${zoom.toFixed(2)} px/mm`;
  }
}

/** The help overlay's table from the key map: [[keys, what it does], ...]. */
export function fillHelp(rows) {
  $("help-table").replaceChildren(...rows.map(([keys, what]) => h("tr", {}, h("td", {}, h("kbd", {}, keys)), h("td", {}, what))));
}
