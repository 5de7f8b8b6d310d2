// Import report page: follows the import job live and reloads the report rows once it finishes.
import { followJob } from "../jobs.js";

const card = document.getElementById("import-job");
if (card && !["succeeded", "failed", "cancelled"].includes(card.dataset.jobStatus)) {
  followJob(card, () => window.location.reload());
}
