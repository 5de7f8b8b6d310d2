// Crop boxes of one series: local state, autosave through the API with versions, confirm, undo, 409 handling.

import { request } from "../http.js";

// a save started as the page closes still reaches the server
const api = (method, url, body) => request(method, url, body, { keepalive: method !== "GET" });

export const DEFAULT_SIZE_MM = 72; // in-plane default: the original 120 px at 0.6 mm

export class BoxStore {
  /** ``onChange()`` redraws; ``onConflict(side, current, message)`` offers to reload; ``onStatus(text)``. */
  constructor(seriesId, initial, { onChange, onConflict, onStatus }) {
    this.seriesId = seriesId;
    this.boxes = { R: null, L: null };
    this.seriesStatus = initial.box_status;
    for (const side of ["R", "L"]) this.boxes[side] = initial.boxes[side] ? { ...initial.boxes[side] } : null;
    this.onChange = onChange;
    this.onConflict = onConflict;
    this.onStatus = onStatus;
    this.timers = {};
    this.saving = { R: Promise.resolve(), L: Promise.resolve() };
    this.conflict = { R: null, L: null };
  }

  url(side, action = "") {
    return `/api/series/${this.seriesId}/boxes/${side}/${action ? action + "/" : ""}`;
  }

  /** Set a side's box (LPS mm) locally and schedule an autosave. */
  set(side, lpsMin, lpsMax) {
    const lo = lpsMin.map((v, a) => Math.min(v, lpsMax[a]));
    const hi = lpsMin.map((v, a) => Math.max(v, lpsMax[a]));
    const box = this.boxes[side] || { side, version: 0, status: "proposed" };
    box.lps_min = lo;
    box.lps_max = hi;
    box.status = "proposed";
    box.dirty = true;
    this.boxes[side] = box;
    this.onChange();
    this.scheduleSave(side);
  }

  scheduleSave(side, delay = 350) {
    clearTimeout(this.timers[side]);
    this.onStatus(`${side}: unsaved changes…`);
    this.timers[side] = setTimeout(() => this.save(side), delay);
  }

  /** Save now (chained after any save in flight); resolves when the server has answered. */
  save(side, { force = false } = {}) {
    clearTimeout(this.timers[side]);
    this.saving[side] = this.saving[side].then(async () => {
      const box = this.boxes[side];
      if (!box || (!box.dirty && !force) || this.conflict[side]) return;
      const round = (v) => v; // full precision: a z on a slice centre must stay on it
      const sent = { lps_min: box.lps_min.map(round), lps_max: box.lps_max.map(round) };
      const { status, data } = await api("PUT", this.url(side), { ...sent, version: box.version, status: "proposed" });
      if (status === 200) {
        const same = JSON.stringify(box.lps_min.map(round)) === JSON.stringify(sent.lps_min)
          && JSON.stringify(box.lps_max.map(round)) === JSON.stringify(sent.lps_max);
        this.boxes[side] = { ...data, lps_min: same ? data.lps_min : box.lps_min, lps_max: same ? data.lps_max : box.lps_max, dirty: !same };
        this.onStatus(`${side}: saved (version ${data.version})`);
        if (!same) this.scheduleSave(side, 0);
      } else if (status === 409) {
        this.conflict[side] = data.current;
        this.onConflict(side, data.current, data.detail);
      } else {
        this.onStatus(`${side}: not saved — ${data ? JSON.stringify(data) : "HTTP " + status}`);
      }
      this.onChange();
    });
    return this.saving[side];
  }

  /** Adopt the server's current box after a conflict. */
  reload(side) {
    const current = this.conflict[side];
    this.conflict[side] = null;
    this.boxes[side] = current ? { ...current } : null;
    this.onStatus(`${side}: reloaded version ${current ? current.version : 0}`);
    this.onChange();
  }

  /** Keep the local box after a conflict: save it over the server's current version. */
  overwrite(side) {
    const current = this.conflict[side];
    this.conflict[side] = null;
    if (this.boxes[side]) {
      this.boxes[side].version = current ? current.version : 0;
      this.boxes[side].dirty = true;
    }
    return this.save(side);
  }

  async _post(side, action) {
    await this.save(side);
    const box = this.boxes[side];
    if (!box || this.conflict[side]) return;
    const { status, data } = await api("POST", this.url(side, action), { version: box.version });
    if (status === 200) {
      this.boxes[side] = { ...data };
      this.onStatus(`${side}: ${action === "confirm" ? "confirmed" : "undone"} (version ${data.version})`);
    } else if (status === 409) {
      this.conflict[side] = data.current;
      this.onConflict(side, data.current, data.detail);
    } else {
      this.onStatus(`${side}: ${data && data.detail ? data.detail : "HTTP " + status}`);
    }
    this.onChange();
  }

  confirm(side) { return this._post(side, "confirm"); }

  undo(side) { return this._post(side, "undo"); }

  async refreshStatus() {
    const { status, data } = await api("GET", `/api/series/${this.seriesId}/boxes/`);
    if (status === 200) this.seriesStatus = data.box_status;
    return this.seriesStatus;
  }
}
