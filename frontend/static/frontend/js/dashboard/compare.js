// Runs comparison: "Evaluate" buttons start an evaluation job, then follow it and reload.
import { postJSON } from "../http.js";
import { fieldSpan, followJob } from "../jobs.js";

for (const button of document.querySelectorAll("button.evaluate")) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const { job } = await postJSON(`/api/runs/${button.dataset.run}/evaluations/`, {});
      const span = document.createElement("span");
      span.dataset.jobId = job;
      span.append(" ", fieldSpan("status"), " ", fieldSpan("message"));
      button.after(span);
      followJob(span, () => window.location.reload());
    } catch (err) {
      button.after(document.createTextNode(` ${err.message}`));
    }
  });
}
