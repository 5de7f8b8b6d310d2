// A training run's page: folds' progress and per-fold learning curves, live while the run's job runs.
import { lineChart } from "./charts.js";
import { getJSON } from "./http.js";
import { watchJob } from "./jobs.js";

let doc = JSON.parse(document.getElementById("run-doc").textContent);

function render(d) {
  document.getElementById("run-status").textContent = d.stage;
  document.getElementById("run-status").className = `badge ${d.status}`;
  document.getElementById("run-version").textContent = d.version ?? "—";
  // the starting weights are written by the run's train job: the page loaded before it said "random init"
  const weights = document.getElementById("run-weights");
  if (weights && d.pretrained) weights.textContent = `pretrained (${d.pretrained})`;
  else if (weights && d.status === "succeeded") weights.textContent = "random init";
  const body = document.querySelector("#folds tbody");
  body.replaceChildren(...d.folds.map((f) => {
    const tr = document.createElement("tr");
    const epochs = d.config.epochs;
    const cells = [f.fold, f.status, `${f.epoch}/${epochs}`, f.best_epoch ?? "—",
                   f.val_loss == null ? "—" : f.val_loss.toFixed(4), (d.split.folds[f.fold] || []).join(", ")];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    tr.dataset.fold = f.fold;
    return tr;
  }));
  const curves = document.getElementById("curves");
  curves.replaceChildren(...d.folds.map((f) => {
    const div = document.createElement("div");
    div.className = "card";
    lineChart(div, [{ label: "train", points: f.history.map((h) => [h.epoch, h.train_loss]) },
                    { label: "validation", points: f.history.map((h) => [h.epoch, h.val_loss]) }],
              { title: `Fold ${f.fold}`, xLabel: "epoch", yLabel: "loss", width: 360, height: 220, integerX: true });
    return div;
  }));
}

render(doc);
if (doc.job) {
  // the run's job finishes last (after its folds and their aggregation): refresh the run on every update
  watchJob(doc.job, async () => { doc = await getJSON(`/api/runs/${doc.id}/`); render(doc); }, 2000);
}
