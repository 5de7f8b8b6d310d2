// Import report page: follows the import job live and reloads the report rows once it finishes.
import { FINISHED, followJob } from "../jobs.js";

const card = document.getElementById("import-job");
if (card && !FINISHED.has(card.dataset.jobStatus)) {
  followJob(card, () => window.location.reload());
}
