// The page of `mlbench serve`: posts the text to /v1/predict and draws the top-k labels
// as bars, each with its decision threshold marked. Plain DOM (textContent only), no build step.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

const pct = (x) => `${Math.max(0, Math.min(1, x)) * 100}%`;

async function loadModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("model").textContent = `${health.model} (${health.track}, ${health.labels} labels)`;
    $("explain").disabled = !health.explain;
    const select = $("rule");
    for (const rule of health.rules.filter((r) => r !== "best")) {
      const option = el("option", "", rule);
      option.value = rule;
      select.append(option);
    }
  } catch (err) {
    $("status").textContent = `cannot reach the server: ${err}`;
  }
}

function clearResult() {
  for (const id of ["bars", "why"]) $(id).replaceChildren();
  $("chosen").textContent = "";
}

// One quantity per row: the calibrated probability when the model has one, else the raw score;
// the bar, the number and the threshold mark all show it (the mark: where the rule's score
// threshold lands on that scale).
function draw(result, rule, calibrated) {
  clearResult();
  const bars = $("bars");
  $("chosen").textContent = result.labels.length
    ? `Predicted under rule "${rule}": ${result.labels.map((l) => l.label).join(", ")}`
    : `No label passes rule "${rule}".`;
  for (const item of result.top_k) {
    const row = el("div", item.passed ? "bar-row passed" : "bar-row");
    row.dataset.label = item.label;
    const shown = calibrated ? item.probability : item.score;
    const mark_at = calibrated ? item.threshold_probability : item.threshold;
    row.dataset.value = String(shown);
    const track = el("div", "bar-track");
    const fill = el("div", "bar-fill");
    fill.style.width = pct(shown);
    const mark = el("div", "bar-threshold");
    mark.style.left = pct(mark_at);
    mark.title = calibrated
      ? `threshold ${item.threshold.toFixed(3)} on the score (probability ${mark_at.toFixed(3)})`
      : `threshold ${item.threshold.toFixed(3)}`;
    track.append(fill, mark);
    row.append(el("div", "bar-label", item.label), track, el("div", "bar-score", shown.toFixed(3)));
    bars.append(row);
  }
  $("quantity").textContent = calibrated ? "calibrated probability" : "score";
  const why = $("why");
  why.replaceChildren();
  for (const [label, pairs] of Object.entries(result.explanations || {})) {
    why.append(el("div", "why-label", `Why ${label}`));
    const line = el("div", "why-line");
    for (const { token, weight } of pairs) {
      const sign = weight >= 0 ? "+" : "";
      line.append(el("span", weight >= 0 ? "why-token up" : "why-token down", `${token} ${sign}${weight.toFixed(3)}`));
    }
    why.append(line);
  }
}

async function predict(event) {
  event.preventDefault();
  const status = $("status");
  status.className = "muted";  // the previous error goes as soon as a new request starts
  status.textContent = "scoring…";
  const body = { texts: [$("text").value], top_k: Number($("topk").value) || 10, rule: $("rule").value,
                 explain: $("explain").checked };
  try {
    const response = await fetch("/v1/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let data;
    try {
      data = await response.json();
    } catch {
      throw new Error(`the server answered HTTP ${response.status}`);
    }
    if (!response.ok) throw new Error(`${data.error}${data.field ? ` (field ${data.field})` : ""}`);
    draw(data.results[0], data.rule, data.calibrated);
    status.textContent = "";
  } catch (err) {
    clearResult();  // no stale bars under an error: they belonged to another text
    status.className = "error";
    status.textContent = String(err.message || err);
  }
}

$("form").addEventListener("submit", predict);
loadModel();
