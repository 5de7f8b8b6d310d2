// A training run's page: folds' progress and per-fold learning curves, refreshed live from /api/runs/<id>/.
import { lineChart } from "./charts.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
let doc = JSON.parse(document.getElementById("run-doc").textContent);

function render(d) {
  document.getElementById("run-status").textContent = d.status;
  document.getElementById("run-status").className = `badge ${d.status}`;
  document.getElementById("run-version").textContent = d.version ?? "—";
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
    lineChart(div, {
      title: `Fold ${f.fold}`, xLabel: "epoch", yLabel: "loss",
      series: [{ name: "train", points: f.history.map((h) => [h.epoch, h.train_loss]) },
               { name: "validation", points: f.history.map((h) => [h.epoch, h.val_loss]) }],
    });
    return div;
  }));
}

async function poll() {
  while (!FINISHED.has(doc.status)) {
    await new Promise((r) => setTimeout(r, 2000));
    const res = await fetch(`/api/runs/${doc.id}/`, { credentials: "same-origin" });
    if (!res.ok) return;
    doc = await res.json();
    render(doc);
  }
}

render(doc);
poll();
