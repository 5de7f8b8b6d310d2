// Crop boxes of one series: local state, autosave through the API with versions, confirm, undo/redo through the
// whole history, restore of any version, the version list, and 409 handling.

import { SIGNED_OUT, request } from "../http.js";

// a save started as the page closes still reaches the server
const api = (method, url, body) => request(method, url, body, { keepalive: method !== "GET" });

export const DEFAULT_SIZE_MM = 72; // in-plane default: the original 120 px at 0.6 mm
export const SIDES = ["R", "L"];
const DONE = { confirm: "confirmed", undo: "undone", redo: "redone", restore: "restored" };

function message(data, status) {
  if (!data) return `HTTP ${status}`;
  if (data.detail) return data.detail;
  return Object.entries(data).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : v}`).join("; ");
}

export class BoxStore {
  /** ``onChange()`` redraws; ``onConflict(side, current, message)`` offers to reload; ``onStatus(text)``;
   * ``onSignedOut(side, kind)`` when a save found the session ended (the edit stays, unsaved, for ``retry``). */
  constructor(seriesId, initial, { onChange, onConflict, onStatus, onSignedOut = () => {} }) {
    this.seriesId = seriesId;
    this.boxes = { R: null, L: null };
    this.history = { R: [], L: [] };
    this.seriesStatus = initial.box_status;
    this.uncovered_sides = initial.uncovered_sides || {}; // side -> what the proposer found missing
    this.maxSideMm = initial.max_side_mm || 200;
    for (const side of SIDES) this.boxes[side] = initial.boxes[side] ? { ...initial.boxes[side] } : null;
    this.onChange = onChange;
    this.onConflict = onConflict;
    this.onStatus = onStatus;
    this.onSignedOut = onSignedOut;
    this.unsentAction = { R: null, L: null }; // [action, extra] an ended session refused
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
      const sent = { lps_min: [...box.lps_min], lps_max: [...box.lps_max] }; // full precision
      const { status, data } = await api("PUT", this.url(side), { ...sent, version: box.version, status: "proposed" });
      if (status === 200) {
        const same = JSON.stringify(box.lps_min) === JSON.stringify(sent.lps_min)
          && JSON.stringify(box.lps_max) === JSON.stringify(sent.lps_max);
        this.boxes[side] = { ...data, lps_min: same ? data.lps_min : box.lps_min, lps_max: same ? data.lps_max : box.lps_max, dirty: !same };
        this.onStatus(`${side}: saved (version ${data.version})`);
        if (!same) this.scheduleSave(side, 0);
        this.loadHistory(side);
      } else if (status === 409) {
        this.conflict[side] = data.current;
        this.onConflict(side, data.current, data.detail);
      } else if (status === SIGNED_OUT) {
        // the session ended: the edit is kept (dirty) and saved by retry() once signed in again
        this.onStatus(`${side}: not saved — signed out`);
        this.onSignedOut(side, "box");
      } else {
        // refused (e.g. 400: the server names the field): the box goes back to what is stored
        this.onStatus(`${side}: not saved — ${message(data, status)}`);
        await this.refresh(side);
      }
      this.onChange();
    });
    return this.saving[side];
  }

  /** Save every box an ended session left unsaved, then do the actions (confirm, undo, ...) it refused. */
  retry() {
    return Promise.all(SIDES.map(async (s) => {
      if (this.boxes[s] && this.boxes[s].dirty) await this.save(s);
      const pending = this.unsentAction[s];
      this.unsentAction[s] = null;
      if (pending) await this._post(s, ...pending);
    }));
  }

  /** Re-read one side's box from the server. */
  async refresh(side) {
    const { status, data } = await api("GET", this.url(side));
    if (status === 200) this.boxes[side] = data ? { ...data } : null;
    this.onChange();
  }

  /** Adopt the server's current box after a conflict. */
  reload(side) {
    const current = this.conflict[side];
    this.conflict[side] = null;
    this.boxes[side] = current ? { ...current } : null;
    this.onStatus(`${side}: reloaded version ${current ? current.version : 0}`);
    this.loadHistory(side);
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

  async _post(side, action, extra = {}) {
    await this.save(side);
    const box = this.boxes[side];
    if (!box || !box.version || this.conflict[side]) {
      if (!box) this.onStatus(`${side}: no box yet (d draws one)`);
      return false;
    }
    const { status, data } = await api("POST", this.url(side, action), { version: box.version, ...extra });
    let ok = false;
    if (status === 200) {
      this.boxes[side] = { ...data };
      this.onStatus(`${side}: ${DONE[action]} (version ${data.version})`);
      this.loadHistory(side);
      ok = true;
    } else if (status === 409) {
      this.conflict[side] = data.current;
      this.onConflict(side, data.current, data.detail);
    } else if (status === SIGNED_OUT) {
      // the session ended: the action is kept and done by retry() once signed in again
      this.unsentAction[side] = [action, extra];
      this.onStatus(`${side}: not ${DONE[action]} — signed out`);
      this.onSignedOut(side, action);
    } else {
      this.onStatus(`${side}: ${message(data, status)}`);
    }
    this.onChange();
    return ok;
  }

  confirm(side) { return this._post(side, "confirm"); }

  /** Back to the state the current one was made from (walks back through every earlier state). */
  undo(side) { return this._post(side, "undo"); }

  /** Forward again after an undo. */
  redo(side) { return this._post(side, "redo"); }

  /** Bring back version ``version`` (a new version). */
  restore(side, version) { return this._post(side, "restore", { restore: version }); }

  /** Fetch the version list of one side (newest first) into ``this.history``. */
  async loadHistory(side) {
    if (!this.boxes[side] || !this.boxes[side].version) { this.history[side] = []; return []; }
    const { status, data } = await api("GET", this.url(side, "history"));
    if (status === 200) this.history[side] = data;
    this.onChange();
    return this.history[side];
  }

  async refreshStatus() {
    const { status, data } = await api("GET", `/api/series/${this.seriesId}/boxes/`);
    if (status === 200) {
      this.seriesStatus = data.box_status;
      this.uncovered_sides = data.uncovered_sides || {};
    }
    return this.seriesStatus;
  }
}
