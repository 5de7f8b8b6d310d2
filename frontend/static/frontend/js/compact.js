// Compact text for long values in tables: Series UIDs and lists of flagged slices. The full value stays in the
// element's title (and, for UIDs, behind a copy button). Everything is written as text, never as markup.

const MINUS = "\u2212";
const num = (v) => {
  const s = String(+Number(v).toFixed(1));
  return s.startsWith("-") ? MINUS + s.slice(1) : s;
};

/** "1.2.826.0.1.3680043.8.498.12345678901234" -> "1.2.826…01234" (uids of up to ``max`` characters kept whole). */
export function shortUid(uid, max = 20, head = 8, tail = 6) {
  const s = String(uid ?? "");
  return s.length <= max ? s : `${s.slice(0, head)}\u2026${s.slice(-tail)}`;
}

/**
 * Flagged slice positions (mm, any order) as runs of neighbouring slices: [40, 41, …, 47, 52] ->
 * "9 slices: 40 to 47, 52" ("to", not a dash, so "−120 to −114" reads as a range below 0). Neighbours are slices
 * one spacing apart (the smallest gap in the list); at most ``maxRuns`` runs are written, then "…".
 */
export function compactSlices(values, maxRuns = 3) {
  const v = [...new Set((values || []).map(Number).filter(Number.isFinite))].sort((a, b) => a - b);
  if (!v.length) return "";
  const gaps = v.slice(1).map((x, i) => x - v[i]).filter((g) => g > 1e-6);
  const step = gaps.length ? Math.min(...gaps) : 0;
  const runs = [];
  for (const x of v) {
    const last = runs[runs.length - 1];
    if (last && x - last[1] <= step * 1.01 + 1e-6) last[1] = x;
    else runs.push([x, x]);
  }
  const text = runs.slice(0, maxRuns).map(([a, b]) => (a === b ? num(a) : `${num(a)} to ${num(b)}`)).join(", ");
  return `${v.length} slice${v.length === 1 ? "" : "s"}: ${text}${runs.length > maxRuns ? "\u2026" : ""}`;
}

/** An element showing ``uid`` compact, the full UID in its title and a button that copies it. */
export function uidCell(uid) {
  const wrap = document.createElement("span");
  wrap.className = "uid";
  const code = document.createElement("code");
  code.textContent = shortUid(uid);
  code.title = uid;
  code.dataset.uid = uid;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-uid";
  copy.title = "copy the full Series UID";
  copy.textContent = "copy";
  copy.addEventListener("click", async (e) => {
    e.stopPropagation(); // the row's own click opens the viewer
    try {
      await navigator.clipboard.writeText(uid);
      copy.textContent = "copied";
    } catch {
      window.prompt("Series UID", uid); // no clipboard (plain http): select and copy from the prompt
    }
  });
  wrap.append(code, " ", copy);
  return wrap;
}
