// Live progress for any element with data-job-id: polls /api/jobs/<id>/ until the job finishes.
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export async function followJob(el, onDone) {
  const id = el.dataset.jobId;
  for (;;) {
    const res = await fetch(`/api/jobs/${id}/`, { credentials: "same-origin" });
    if (!res.ok) return;
    const job = await res.json();
    for (const node of el.querySelectorAll("[data-field]")) {
      const value = job[node.dataset.field];
      if (node.tagName === "PROGRESS") node.value = value;
      else node.textContent = value ?? "";
    }
    el.dataset.status = job.status;
    if (FINISHED.has(job.status)) { if (onDone) onDone(job); return; }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

for (const el of document.querySelectorAll("[data-job-id]")) followJob(el);
