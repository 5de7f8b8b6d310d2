// Following jobs live: the one module every page uses to watch a Job (/api/jobs/<id>/) until it finishes.
import { getJSON } from "./http.js";

export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

// Poll job `id` every `intervalMs`; `onUpdate(job)` on every answer. Resolves to the finished job (or null
// when the job cannot be read).
export async function watchJob(id, onUpdate, intervalMs = 1000) {
  for (;;) {
    let job;
    try { job = await getJSON(`/api/jobs/${id}/`); } catch { return null; }
    onUpdate(job);
    if (FINISHED.has(job.status)) return job;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// Follow the job of an element with data-job-id: fills its [data-field] children (a <progress> gets the
// value) and its data-status; `onDone(job)` once it finished.
export async function followJob(el, onDone) {
  const job = await watchJob(el.dataset.jobId, (j) => {
    for (const node of el.querySelectorAll("[data-field]")) {
      const value = j[node.dataset.field];
      if (node.tagName === "PROGRESS") node.value = value;
      else node.textContent = value ?? "";
      if (node.dataset.field === "status" && node.classList.contains("badge")) node.className = `badge ${value}`;
    }
    el.dataset.status = j.status;
  });
  if (job && onDone) onDone(job);
}

// An empty <span data-field="NAME"> that followJob fills with the job's NAME.
export function fieldSpan(name) {
  const span = document.createElement("span");
  span.dataset.field = name;
  return span;
}

// Pages that only show jobs mark them with data-follow; every such element is followed.
for (const el of document.querySelectorAll("[data-job-id][data-follow]")) followJob(el);
