// A run's evaluation page: metrics with CIs, threshold slider (confusion matrix and metrics update at once,
// computed in the page from the API's per-scan scores), ROC, threshold and learning curves, scan verdicts.
import { getJSON, postJSON } from "../http.js";
import { lineChart, PALETTE } from "../charts.js";
import { followJob } from "../jobs.js";

const METRICS = ["auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv"];
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "n/a" : Number(v).toFixed(d));
const ci = (c) => (c ? ` [${fmt(c[0], 2)}, ${fmt(c[1], 2)}]` : "");
const $ = (sel) => document.querySelector(sel);

// Same rule as inference.ml.metrics: a scan is abnormal when its score >= the operating value.
export function confusionAt(scores, value) {
  let tn = 0, fp = 0, fn = 0, tp = 0;
  for (const [score, label] of scores) {
    const called = score >= value;
    if (label) called ? tp++ : fn++;
    else called ? fp++ : tn++;
  }
  const ratio = (a, b) => (b ? a / b : null);
  return { tn, fp, fn, tp, sensitivity: ratio(tp, tp + fn), specificity: ratio(tn, tn + fp),
    accuracy: ratio(tp + tn, tn + fp + fn + tp), ppv: ratio(tp, tp + fp), npv: ratio(tn, tn + fn) };
}

function renderMetrics(doc) {
  const body = $("#metrics tbody");
  body.replaceChildren();
  for (const m of METRICS) {
    const tr = document.createElement("tr");
    tr.dataset.metric = m;
    tr.innerHTML = `<th>${m.replace("_", " ")}</th>` + ["image", "scan", "patient"].map((lvl) =>
      `<td data-level="${lvl}">${fmt(doc[lvl][m])}<span class="muted ci">${ci(doc[lvl][`${m}_ci`])}</span></td>`).join("");
    body.appendChild(tr);
  }
  const tr = document.createElement("tr");
  tr.innerHTML = "<th>confusion [[tn, fp], [fn, tp]]</th>" + ["image", "scan", "patient"].map((lvl) =>
    `<td>${JSON.stringify(doc[lvl].confusion)}</td>`).join("");
  body.appendChild(tr);
  $("#n-test").textContent = `${doc.test_patients.length} / ${doc.scans.length}`;
}

function renderAggregators(doc) {
  const body = $("#aggregators tbody");
  body.replaceChildren();
  for (const [name, a] of Object.entries(doc.aggregators)) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${name}${a.top_k ? ` (k=${a.top_k})` : ""}${name === doc.aggregator ? " · original" : ""}</td>` +
      `<td>${fmt(a.operating_value)}</td>` +
      ["auc", "accuracy", "sensitivity", "specificity", "ppv", "npv"].map((m) => `<td>${fmt(a[m])}<span class="muted ci">${ci(a[`${m}_ci`])}</span></td>`).join("");
    body.appendChild(tr);
  }
}

function setupThreshold(doc) {
  const slider = $("#op-slider"), select = $("#aggregator");
  for (const name of Object.keys(doc.aggregators)) {
    const opt = new Option(name === doc.aggregator ? `${name} (original)` : name, name);
    select.appendChild(opt);
  }
  select.value = doc.aggregator;
  let thresholdChart = null;

  // the slider moves in steps of 0.01; the chosen value itself is used exactly until the slider moves
  let value = doc.operating_value;
  const update = () => {
    const agg = doc.aggregators[select.value];
    const c = confusionAt(agg.scores, value);
    $("#op-value").textContent = value.toFixed(3);
    for (const k of ["tn", "fp", "fn", "tp"]) $(`#cm-${k}`).textContent = c[k];
    for (const k of ["sensitivity", "specificity", "accuracy", "ppv", "npv"]) $(`#live-${k}`).textContent = fmt(c[k]);
    slider.dataset.value = value;
    if (thresholdChart) thresholdChart.setMarker(value);
  };
  const draw = () => {
    const agg = doc.aggregators[select.value];
    const curve = agg.threshold_curve;
    thresholdChart = lineChart($("#threshold-chart"), ["sensitivity", "specificity", "accuracy", "ppv", "npv"].map((m) => ({
      label: m, points: curve.map((p) => [p.threshold, p[m]]),
    })), { xDomain: [0, 1], yDomain: [0, 1], xLabel: `operating value (${select.value})`, yLabel: "metric" });
    const rocSeries = [{ label: `scan (${select.value})`, points: agg.roc.fpr.map((x, i) => [x, agg.roc.tpr[i]]) },
      { label: "image", points: doc.image.roc.fpr.map((x, i) => [x, doc.image.roc.tpr[i]]), dash: "4 2" }];
    lineChart($("#roc-chart"), rocSeries, { xDomain: [0, 1], yDomain: [0, 1], xLabel: "1 - specificity", yLabel: "sensitivity", diagonal: true });
    update();
  };
  const toChosen = () => { value = doc.aggregators[select.value].operating_value; slider.value = value; };
  select.addEventListener("change", () => { toChosen(); draw(); });
  slider.addEventListener("input", () => { value = parseFloat(slider.value); update(); });
  $("#op-reset").addEventListener("click", () => { toChosen(); update(); });
  toChosen();
  draw();
}

function renderLearning(doc) {
  const series = [];
  doc.learning_curves.forEach((f, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pick = (key) => f.history.filter((h) => h[key] !== undefined).map((h, j) => [h.epoch ?? j + 1, h[key]]);
    series.push({ label: `fold ${f.fold} val`, points: pick("val_loss"), color });
    series.push({ label: `fold ${f.fold} train`, points: pick("train_loss"), color, dash: "3 3" });
  });
  if (series.some((s) => s.points.length)) {
    lineChart($("#learning-chart"), series, { xLabel: "epoch", yLabel: "loss", width: 640, height: 280, integerX: true });
  } else {
    $("#learning-chart").textContent = "No per-epoch history recorded.";
  }
}

async function loadScans(evaluationId, sort, outcome) {
  const params = new URLSearchParams({ sort });
  if (outcome) params.set("outcome", outcome);
  const data = await getJSON(`/api/evaluations/${evaluationId}/scans/?${params}`);
  const body = $("#scans tbody");
  body.replaceChildren();
  for (const s of data.scans) {
    const tr = document.createElement("tr");
    tr.className = s.outcome;
    tr.dataset.seriesUid = s.series_uid;
    const side = (k) => (s.sides && s.sides[k] !== undefined ? fmt(s.sides[k], 2) : "—");
    tr.innerHTML = `<td>${s.patient}</td><td class="muted">${s.series_uid}</td><td>${fmt(s.probability)}</td>` +
      `<td>${fmt(s.fraction)}</td><td><span class="badge ${s.verdict}">${s.verdict}</span></td>` +
      `<td><span class="badge ${s.label}">${s.label}</span></td><td>${s.outcome.toUpperCase()}</td>` +
      `<td>${side("R")}</td><td>${side("L")}</td><td>${(s.flagged_slices_mm || []).join(", ")}</td><td class="evidence"></td>`;
    for (const e of s.evidence || []) { // where the model looked: thumbnails of this run's stored verdict
      const img = Object.assign(document.createElement("img"), { src: e.url, width: 64, height: 64,
        className: "evidence-thumb", loading: "lazy", alt: `evidence ${e.side} z ${e.z_mm} mm` });
      img.title = `${e.side} · z ${e.z_mm} mm · p ${fmt(e.probability)}`;
      tr.lastElementChild.appendChild(img);
    }
    if (s.viewer_url) {
      tr.addEventListener("click", () => { window.location.href = s.viewer_url; });
      tr.dataset.href = s.viewer_url;
    }
    body.appendChild(tr);
  }
}

function setupScans(evaluationId) {
  let sort = "outcome";
  const filter = $("#scan-filter");
  const reload = () => loadScans(evaluationId, sort, filter.value);
  for (const th of document.querySelectorAll("#scans th[data-sort]")) {
    th.addEventListener("click", () => {
      sort = sort === th.dataset.sort ? `-${th.dataset.sort}` : th.dataset.sort;
      reload();
    });
  }
  filter.addEventListener("change", reload);
  return reload();
}

function setupEvaluate() {
  const button = $("#evaluate");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    const status = $("#evaluate-status");
    try {
      const { job } = await postJSON(`/api/runs/${button.dataset.run}/evaluations/`, { objective: $("#objective").value });
      status.dataset.jobId = job;
      status.innerHTML = 'evaluating: <span data-field="status"></span> <span data-field="message"></span>';
      followJob(status, (j) => { if (j.status === "succeeded") window.location.reload(); else button.disabled = false; });
    } catch (err) {
      status.textContent = err.message;
      button.disabled = false;
    }
  });
}

async function main() {
  setupEvaluate();
  const root = $("#dashboard");
  if (!root) return;
  const doc = await getJSON(`/api/evaluations/${root.dataset.evaluation}/`);
  const objective = $("#objective");
  if ([...objective.options].some((o) => o.value === doc.objective)) objective.value = doc.objective;
  renderMetrics(doc);
  renderAggregators(doc);
  setupThreshold(doc);
  renderLearning(doc);
  await setupScans(root.dataset.evaluation);
  root.dataset.ready = "1";
}

main().catch((err) => {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = `Could not load the evaluation: ${err.message}`;
  document.querySelector("main").appendChild(p);
});
