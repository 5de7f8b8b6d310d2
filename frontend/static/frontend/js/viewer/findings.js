// Per-side findings of one series (gland seen / not visualised / absent, lesion marker, comment): saved through
// the API with versions (409 handling as for boxes), their version list and restore.
import { SIGNED_OUT, request } from "../http.js";
import { SIDES } from "./boxes.js";

const api = (method, url, body) => request(method, url, body, { keepalive: method !== "GET" });

function message(data, status) {
  if (!data) return `HTTP ${status}`;
  if (data.detail) return data.detail;
  return Object.entries(data).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : v}`).join("; ");
}

export class FindingStore {
  /** ``initial``: {R: finding | null, L: ...}; callbacks as BoxStore's. */
  constructor(seriesId, initial, { onChange, onConflict, onStatus, onSignedOut = () => {} }) {
    this.seriesId = seriesId;
    this.findings = { R: initial.R ? { ...initial.R } : null, L: initial.L ? { ...initial.L } : null };
    this.history = { R: [], L: [] };
    this.conflict = { R: null, L: null };
    this.pending = { R: null, L: null }; // the patch a conflict interrupted
    this.unsent = { R: null, L: null }; // changes an ended session refused, shown and sent again by retry()
    this.unsentRestore = { R: null, L: null }; // a restore it refused
    this.saving = { R: Promise.resolve(), L: Promise.resolve() };
    this.onChange = onChange;
    this.onConflict = onConflict;
    this.onSignedOut = onSignedOut;
    this.onStatus = onStatus;
  }

  url(side, action = "") {
    return `/api/series/${this.seriesId}/findings/${side}/${action ? action + "/" : ""}`;
  }

  /** The current findings of a side (with changes not yet saved), with defaults when none were recorded. */
  of(side) {
    const stored = this.findings[side] || { side, gland: "seen", lesion_centre_lps: null, lesion_diameter_mm: null, comment: "", version: 0 };
    return this.unsent[side] ? { ...stored, ...this.unsent[side] } : stored;
  }

  /** Save a change (``patch``: any of gland, lesion_centre_lps, lesion_diameter_mm, comment) as a new version. */
  update(side, patch) {
    this.saving[side] = this.saving[side].then(async () => {
      if (this.conflict[side]) return;
      const unsent = this.unsent[side];
      this.unsent[side] = null; // sent now, with this patch on top
      patch = { ...(unsent || {}), ...patch };
      const { status, data } = await api("PUT", this.url(side), { ...patch, version: this.of(side).version });
      if (status === 200) {
        this.findings[side] = data;
        this.onStatus(`${side} findings: saved (version ${data.version})`);
        this.loadHistory(side);
      } else if (status === 409) {
        this.conflict[side] = data.current;
        this.pending[side] = patch;
        this.onConflict(side, data.current, data.detail, "findings");
      } else if (status === SIGNED_OUT) {
        // the session ended: the change is kept (shown in the panel) and sent again by retry()
        this.unsent[side] = { ...(this.unsent[side] || {}), ...patch };
        this.onStatus(`${side} findings: not saved — signed out`);
        this.onSignedOut(side, "findings");
      } else {
        this.onStatus(`${side} findings: not saved — ${message(data, status)}`);
      }
      this.onChange();
    });
    return this.saving[side];
  }

  setLesion(side, centre, diameter) {
    return this.update(side, { lesion_centre_lps: centre, lesion_diameter_mm: diameter });
  }

  /** Send again the changes an ended session refused. */
  retry() {
    return Promise.all(SIDES.map(async (s) => {
      if (this.unsent[s]) await this.update(s, {});
      const version = this.unsentRestore[s];
      this.unsentRestore[s] = null;
      if (version) await this.restore(s, version);
    }));
  }

  clearLesion(side) { return this.setLesion(side, null, null); }

  reload(side) {
    this.findings[side] = this.conflict[side] ? { ...this.conflict[side] } : null;
    this.conflict[side] = null;
    this.pending[side] = null;
    this.loadHistory(side);
    this.onChange();
  }

  overwrite(side) {
    const current = this.conflict[side];
    const patch = this.pending[side] || {};
    this.conflict[side] = null;
    this.pending[side] = null;
    this.findings[side] = current ? { ...current } : null;
    return this.update(side, patch);
  }

  async restore(side, version) {
    const { status, data } = await api("POST", this.url(side, "restore"), { version: this.of(side).version, restore: version });
    if (status === 200) {
      this.findings[side] = data;
      this.onStatus(`${side} findings: restored version ${version} (now ${data.version})`);
      this.loadHistory(side);
    } else if (status === 409) {
      this.conflict[side] = data.current;
      this.onConflict(side, data.current, data.detail, "findings");
    } else if (status === SIGNED_OUT) {
      this.unsentRestore[side] = version; // done by retry() once signed in again
      this.onStatus(`${side} findings: not restored — signed out`);
      this.onSignedOut(side, "findings restore");
    } else {
      this.onStatus(`${side} findings: ${message(data, status)}`);
    }
    this.onChange();
  }

  async loadHistory(side) {
    if (!this.findings[side]) { this.history[side] = []; return []; }
    const { status, data } = await api("GET", this.url(side, "history"));
    if (status === 200) this.history[side] = data;
    this.onChange();
    return this.history[side];
  }

  loadAllHistory() { return Promise.all(SIDES.map((s) => this.loadHistory(s))); }
}
