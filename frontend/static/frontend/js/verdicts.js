// The verdict page of a submission: follows its job live (jobs.js) and, once it finished, reloads to show the
// verdict the server rendered (per-side findings, evidence, the model).
import { followJob } from "./jobs.js";

const el = document.querySelector("#job[data-reload-when-done]");
if (el) followJob(el, () => window.location.reload());
