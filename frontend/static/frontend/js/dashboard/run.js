// A run's evaluation page: metrics with CIs, threshold slider (confusion matrix and metrics update at once,
// computed in the page from the API's per-scan scores), ROC, threshold and learning curves, scan verdicts, and
// the reading aids: reliability diagram, precision-recall curve, and PPV/NPV at a prevalence the lead sets
// (computed by the API, inference.ml.metrics.predictive_values: the formula lives there only).
import { getJSON, postJSON } from "../http.js";
import { lineChart, PALETTE } from "../charts.js";
import { fieldSpan, followJob } from "../jobs.js";
import { compactSlices, uidCell } from "../compact.js";

const METRICS = ["auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv"];
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "n/a" : Number(v).toFixed(d));
// an interval of no width (every bootstrap resample gave the same value: few test patients, or all alike) is
// marked †, and the page says what it means: it is not certainty
const pointInterval = (c) => Boolean(c) && c[0] === c[1];
// the bounds to the value's 3 decimals: at 2 an AUC of 0.4347 whose upper bound is itself read "0.435 [0.34, 0.43]",
// the value outside its own interval
const ci = (c) => (c ? ` [${fmt(c[0])}, ${fmt(c[1])}]${pointInterval(c) ? "\u2020" : ""}` : "");
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

// A table cell holding ``children`` (strings become text nodes, never markup).
function cell(tag, children, attrs = {}) {
  const td = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") td.className = v;
    else if (k === "title") td.title = v;
    else td.dataset[k] = v;
  }
  td.append(...[].concat(children).filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return td;
}

const withCi = (value, interval) => [fmt(value), cell("span", ci(interval), { class: "muted ci" })];
const badge = (text) => cell("span", text, { class: `badge ${text}` });

function renderMetrics(doc) {
  const body = $("#metrics tbody");
  body.replaceChildren();
  for (const m of METRICS) {
    const tr = document.createElement("tr");
    tr.dataset.metric = m;
    tr.append(cell("th", m.replace("_", " ")), ...["image", "scan", "patient"].map((lvl) =>
      cell("td", withCi(doc[lvl][m], doc[lvl][`${m}_ci`]), { level: lvl })));
    body.appendChild(tr);
  }
  const tr = document.createElement("tr");
  tr.append(cell("th", "confusion [[tn, fp], [fn, tp]]"),
    ...["image", "scan", "patient"].map((lvl) => cell("td", JSON.stringify(doc[lvl].confusion))));
  body.appendChild(tr);
  $("#n-test").textContent = `${doc.test_patients.length} / ${doc.scans.length}`;
  const tables = [doc.image, doc.scan, doc.patient, ...Object.values(doc.aggregators || {})]; // the metrics and aggregators
  const point = tables.some((t) => METRICS.some((m) => pointInterval(t[`${m}_ci`])));
  const p = doc.patient;
  const plural = (n, word) => `${n} ${word} test patient${n === 1 ? "" : "s"}`;
  $("#ci-note").textContent = point ? `\u2020 Every bootstrap resample gave the same value, so this interval shows no `
    + `uncertainty; it is not certainty: resampling ${plural(p.positives, "abnormal")} and `
    + `${plural(p.negatives, "normal")} cannot move it (too few, or all alike).` : "";
}

function renderAggregators(doc) {
  const body = $("#aggregators tbody");
  body.replaceChildren();
  for (const [name, a] of Object.entries(doc.aggregators)) {
    const tr = document.createElement("tr");
    tr.append(cell("td", `${name}${a.top_k ? ` (k=${a.top_k})` : ""}${name === doc.aggregator ? " · original" : ""}`),
      cell("td", fmt(a.operating_value)),
      ...["auc", "accuracy", "sensitivity", "specificity", "ppv", "npv"].map((m) => cell("td", withCi(a[m], a[`${m}_ci`]))));
    body.appendChild(tr);
  }
}

// Reading aids: the charts from the stored evaluation, PPV/NPV asked of the API for the prevalence typed in and the
// operating value on the slider (the latest answer wins when several are in flight).
function setupReadingAids(doc, evaluationId) {
  const aids = doc.reading_aids || {};
  const rel = aids.reliability;
  if (rel) {
    const series = [{ label: `calibrated (${rel.method})`, points: rel.calibrated.prob_pred.map((x, i) => [x, rel.calibrated.prob_true[i]]),
      sizes: rel.calibrated.count, dots: true }];
    if (rel.method !== "identity") {
      series.push({ label: "raw score", points: rel.raw.prob_pred.map((x, i) => [x, rel.raw.prob_true[i]]),
        sizes: rel.raw.count, dots: true, dash: "4 2" });
    }
    lineChart($("#reliability-chart"), series, { xDomain: [0, 1], yDomain: [0, 1], diagonal: true,
      xLabel: "predicted probability", yLabel: "observed share abnormal" });
    $("#reliability-caption").textContent += ` · ${rel.bins} bins · ECE ${fmt(rel.calibrated.ece)}`;
  } else {
    $("#reliability-chart").textContent = aids.note || "No reliability diagram for this evaluation.";
  }
  let pr = null;
  if (aids.pr) {
    pr = lineChart($("#pr-chart"), [{ label: `scan (${aids.aggregator})`, points: aids.pr.recall.map((r, i) => [r, aids.pr.precision[i]]) }],
      { xDomain: [0, 1], yDomain: [0, 1], xLabel: "recall (sensitivity)", yLabel: "precision (PPV)", hline: aids.pr.base_rate });
    $("#pr-caption").textContent += ` · average precision ${fmt(aids.pr.average_precision)} · dashed: test share abnormal ${fmt(aids.pr.base_rate, 2)}`;
  } else {
    $("#pr-chart").textContent = aids.note || "No precision-recall curve for this evaluation.";
  }
  const input = $("#prevalence");
  const prev = aids.prevalence || {};
  input.value = +(100 * (prev.default ?? 0.01)).toFixed(4);
  $("#prevalence-note").textContent = `default ${+(100 * (prev.default ?? 0.01)).toFixed(2)}%: ${prev.note || ""}`;
  let asked = 0, value = doc.operating_value, aggregator = doc.aggregator;
  const refresh = async () => {
    const mine = ++asked;
    const pct = parseFloat(input.value);
    const params = new URLSearchParams({ prevalence: String(pct / 100), value: String(value), aggregator });
    try {
      if (!Number.isFinite(pct)) throw new Error("prevalence: type a percentage between 0 and 100");
      const r = await getJSON(`/api/evaluations/${evaluationId}/prevalence/?${params}`);
      if (mine !== asked) return;
      $("#prevalence-error").textContent = "";
      $("#prev-ppv").textContent = fmt(r.ppv);
      $("#prev-npv").textContent = fmt(r.npv);
      $("#prev-sens").textContent = fmt(r.sensitivity);
      $("#prev-spec").textContent = fmt(r.specificity);
      $("#prevalence-basis").textContent = `At operating value ${fmt(r.operating_value)} (${r.aggregator}) and prevalence ` +
        `${+(100 * r.prevalence).toFixed(4)}%; on the test scans themselves PPV ${fmt(r.test_ppv)}, NPV ${fmt(r.test_npv)}.`;
      $("#prevalence-stats").dataset.prevalence = r.prevalence;
      if (pr && aggregator === aids.aggregator) {
        const c = confusionAt(doc.aggregators[aggregator].scores, value);
        pr.setPoint(c.sensitivity, c.ppv, `operating value ${fmt(value)}`);
      } else if (pr) {
        pr.setPoint(null, null);
      }
    } catch (err) {
      if (mine !== asked) return;
      for (const id of ["#prev-ppv", "#prev-npv"]) $(id).textContent = "n/a";
      $("#prevalence-error").textContent = err.message;
    }
  };
  // the latest request's promise: the page is ready once the PPV/NPV and the PR point it draws are shown
  let latest = Promise.resolve();
  const ask = () => { latest = refresh(); };
  input.addEventListener("input", ask);
  ask();
  return { at(v, agg) { value = v; aggregator = agg; ask(); }, settled: () => latest };
}

function setupThreshold(doc, onValue = () => {}) {
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
    onValue(value, select.value);
  };
  const draw = () => {
    const agg = doc.aggregators[select.value];
    const curve = agg.threshold_curve;
    thresholdChart = lineChart($("#threshold-chart"), ["sensitivity", "specificity", "accuracy", "ppv", "npv"].map((m) => ({
      label: m, points: curve.map((p) => [p.threshold, p[m]]),
    })), { xDomain: [0, 1], yDomain: [0, 1], xLabel: `operating value (${select.value})`, yLabel: "metric" });
    // an ROC needs both classes: a level whose test set has one is named, not drawn as an empty chart
    const rocSeries = [{ label: `scan (${select.value})`, points: agg.roc.fpr.map((x, i) => [x, agg.roc.tpr[i]]) },
      { label: "image", points: doc.image.roc.fpr.map((x, i) => [x, doc.image.roc.tpr[i]]), dash: "4 2" }];
    const drawn = rocSeries.filter((r) => r.points.length);
    const missing = rocSeries.filter((r) => !r.points.length).map((r) => r.label.split(" ")[0]);
    const rocNote = missing.length ? `no ${missing.join(" or ")} ROC: the test `
      + `${missing.map((m) => `${m}s`).join(" and ")} need both classes (normal and abnormal)` : "";
    if (drawn.length) {
      lineChart($("#roc-chart"), drawn, { xDomain: [0, 1], yDomain: [0, 1], xLabel: "1 - specificity", yLabel: "sensitivity", diagonal: true });
    } else {
      $("#roc-chart").replaceChildren();
    }
    $("#roc-note").textContent = rocNote;
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
    const flagged = s.flagged_slices_mm || [];
    const evidence = cell("td", "", { class: "evidence" });
    tr.append(cell("td", s.patient), cell("td", uidCell(s.series_uid), { class: "muted" }),
      cell("td", fmt(s.score), { class: "score" }), cell("td", fmt(s.probability)),
      cell("td", fmt(s.fraction)), cell("td", badge(s.verdict)), cell("td", badge(s.label)),
      cell("td", String(s.outcome).toUpperCase()), cell("td", side("R")), cell("td", side("L")),
      cell("td", compactSlices(flagged), { class: "flagged", title: flagged.join(", ") }), evidence);
    for (const e of s.evidence || []) { // where the model looked: thumbnails of this run's stored verdict
      const img = Object.assign(document.createElement("img"), { src: e.url, width: 64, height: 64,
        className: "evidence-thumb", loading: "lazy", alt: `evidence ${e.side} z ${e.z_mm} mm` });
      img.title = `${e.side} · z ${e.z_mm} mm · p ${fmt(e.probability)}`;
      evidence.appendChild(img);
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
      status.replaceChildren("evaluating: ", fieldSpan("status"), " ", fieldSpan("message"));
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
  const aids = setupReadingAids(doc, root.dataset.evaluation);
  setupThreshold(doc, (value, aggregator) => aids.at(value, aggregator));
  renderLearning(doc);
  await setupScans(root.dataset.evaluation);
  await aids.settled();
  root.dataset.ready = "1";
}

main().catch((err) => {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = `Could not load the evaluation: ${err.message}`;
  document.querySelector("main").appendChild(p);
});
