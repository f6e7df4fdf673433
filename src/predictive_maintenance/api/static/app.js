// The web client of the predictive maintenance API: one reading, recent checks, a CSV of many.
// Plain browser JavaScript, no build step, no external resources. The readings' names, labels,
// units and plausible ranges come from the API's own description (openapi.json).
"use strict";

(() => {
  const HISTORY_KEY = "predictive-maintenance.history";
  const API_KEY_KEY = "predictive-maintenance.api-key";
  const HISTORY_SIZE = 10;
  const TIMEOUT_MS = 30000;
  const TABLE_ROW_LIMIT = 1000;
  // The "Why" chart: the strongest reasons only (the rest push the risk by little).
  const WHY_BARS = 6;
  const SVG_NS = "http://www.w3.org/2000/svg";

  // The failure modes of the AI4I 2020 data set (its documentation), for orientation only.
  const HEAT_MAX_DIFFERENCE_K = 8.6;
  const HEAT_MAX_SPEED_RPM = 1380;
  const POWER_RANGE_W = [3500, 9000];
  const OVERSTRAIN_LIMIT_MIN_NM = { L: 11000, M: 12000, H: 13000 };

  // Readings inside the plausible ranges that trigger (or avoid) those failure modes.
  const PRESETS = {
    normal: {
      title: "Normal operation",
      reading: { type: "M", air_temperature_k: 298.1, process_temperature_k: 308.6,
        rotational_speed_rpm: 1551, torque_nm: 42.8, tool_wear_min: 0 },
    },
    heat: {
      title: "Heat dissipation failure",
      reading: { type: "L", air_temperature_k: 302.5, process_temperature_k: 310.5,
        rotational_speed_rpm: 1300, torque_nm: 50, tool_wear_min: 100 },
    },
    power: {
      title: "Power failure",
      reading: { type: "L", air_temperature_k: 298.9, process_temperature_k: 308.7,
        rotational_speed_rpm: 2800, torque_nm: 9, tool_wear_min: 50 },
    },
    overstrain: {
      title: "Overstrain",
      reading: { type: "L", air_temperature_k: 299, process_temperature_k: 309.5,
        rotational_speed_rpm: 1500, torque_nm: 55, tool_wear_min: 220 },
    },
  };

  const $ = (id) => document.getElementById(id);
  const form = $("reading-form");
  const message = $("message");
  const batchMessage = $("batch-message");
  const apiKeyInput = $("api-key");

  // ---- what the API says about the readings --------------------------------------------------
  const fieldNames = Array.from(form.querySelectorAll(".fields [name]"), (element) => element.name);
  const schema = {
    labels: {}, // name -> "Air temperature"
    units: {}, // name -> "K"
    types: Array.from($("type").options, (option) => option.value),
    loaded: false,
  };
  for (const name of fieldNames) {
    const label = form.querySelector(`label[for="${name}"]`);
    const unit = label.querySelector(".unit");
    schema.labels[name] = (unit ? label.firstChild.textContent : label.textContent).trim();
    schema.units[name] = unit ? unit.textContent.replace(/[[\]]/g, "").trim() : "";
  }
  const numericFields = fieldNames.filter((name) => name !== "type");

  function fieldLabel(name) {
    if (!(name in schema.labels)) return name;
    return schema.units[name] ? `${schema.labels[name]} [${schema.units[name]}]` : schema.labels[name];
  }

  function formatNumber(value, digits) {
    return Number(value).toLocaleString(undefined, {
      maximumFractionDigits: digits === undefined ? 2 : digits,
      minimumFractionDigits: digits === undefined ? 0 : digits,
    });
  }

  function formatPercent(probability) {
    const percent = probability * 100;
    if (percent === 0) return "0 %";
    if (percent < 0.01) return "< 0.01 %";
    if (percent > 99.99 && percent < 100) return "> 99.99 %";
    return `${formatNumber(percent, percent < 1 ? 2 : 1)} %`;
  }

  function applySchema(document_) {
    const reading = document_.components.schemas.Reading;
    for (const [name, property] of Object.entries(reading.properties)) {
      const input = $(name);
      if (!input || !fieldNames.includes(name)) continue;
      const description = String(property.description || "");
      const label = form.querySelector(`label[for="${name}"]`);
      const hint = $(`${name}-hint`);
      if (Array.isArray(property.enum)) {
        schema.types = property.enum.map(String);
        const selected = input.value;
        input.replaceChildren(
          ...schema.types.map((value) => {
            const meaning = description.match(new RegExp(`\\b${value} \\(([^)]+)\\)`));
            const option = new Option(meaning ? `${value} (${meaning[1]})` : value, value);
            option.selected = value === selected;
            return option;
          }),
        );
        const colon = description.indexOf(":");
        if (colon > 0) {
          schema.labels[name] = description.slice(0, colon).trim();
          label.textContent = schema.labels[name];
        }
        continue;
      }
      const match = description.match(/^(.*?)\s*\[([^\]]+)\]\s*$/);
      if (match) {
        schema.labels[name] = match[1];
        schema.units[name] = match[2];
        const unit = document.createElement("span");
        unit.className = "unit";
        unit.textContent = `[${match[2]}]`;
        label.replaceChildren(`${match[1]} `, unit);
      }
      if (typeof property.minimum === "number") input.min = String(property.minimum);
      if (typeof property.maximum === "number") input.max = String(property.maximum);
      if (hint && input.min && input.max) {
        const unit = schema.units[name] ? ` ${schema.units[name]}` : "";
        hint.textContent = `${formatNumber(input.min)}–${formatNumber(input.max)}${unit}`;
      }
    }
    const example = reading.example || {};
    for (const name of fieldNames) {
      const input = $(name);
      // The page's defaults are the API's example unless someone already typed something.
      if (name in example && input.value === input.defaultValue) {
        input.value = String(example[name]);
        input.defaultValue = input.value;
      }
    }
    schema.loaded = true;
    document.querySelector("#csv-order").textContent = fieldNames
      .map((name) => fieldLabel(name))
      .join(", ");
    const info = document_.info || {};
    const footer = $("api-info");
    const link = document.createElement("a");
    link.href = "openapi.json";
    link.textContent = "openapi.json";
    footer.replaceChildren(
      `${info.title || "API"} ${info.version || ""} · API description: `,
      link,
    );
    updateDerived();
  }

  async function loadSchema() {
    try {
      applySchema(await callApi("openapi.json"));
    } catch (error) {
      $("api-info").textContent = "The API description (openapi.json) could not be loaded.";
      show(
        message,
        `Could not load the readings' ranges from the API: ${problemText(error)} ` +
          "The API still checks every reading.",
        "error",
      );
    }
  }

  // ---- talking to the API ------------------------------------------------------------------------
  class ApiProblem extends Error {
    constructor(text, detail) {
      super(text);
      this.name = "ApiProblem";
      Object.assign(this, { status: null, error: null, row: null, field: null }, detail);
    }
  }

  async function callApi(path, options = {}) {
    const headers = { accept: "application/json" };
    if (options.contentType) headers["content-type"] = options.contentType;
    const key = apiKeyInput.value.trim();
    if (key) headers["x-api-key"] = key;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    let text;
    try {
      response = await fetch(path, {
        method: options.method || "GET",
        headers,
        body: options.body,
        cache: "no-store",
        signal: controller.signal,
      });
      text = await response.text();
    } catch (error) {
      if (error.name === "AbortError") {
        throw new ApiProblem(
          `The API did not answer within ${TIMEOUT_MS / 1000} s. Try again; if this keeps ` +
            "happening, the model endpoint may be down.",
          { error: "timeout" },
        );
      }
      throw new ApiProblem(
        `Cannot reach the API (${error.message}). Check the network connection and try again.`,
        { error: "network_error" },
      );
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const body = data && typeof data === "object" ? data : {};
      let text_ = typeof body.message === "string" && body.message
        ? body.message
        : `The API answered HTTP ${response.status} ${response.statusText}`.trim() +
          (text && !data ? `: ${text.slice(0, 200)}` : ".");
      if (response.status === 403 && /api key/i.test(text_)) {
        text_ += ". Enter the API key under Connection.";
      }
      throw new ApiProblem(text_, {
        status: response.status,
        error: typeof body.error === "string" ? body.error : `http_${response.status}`,
        row: Number.isInteger(body.row) ? body.row : null,
        field: typeof body.field === "string" ? body.field : null,
      });
    }
    if (data === null) {
      throw new ApiProblem("The API answered something other than JSON.", {
        status: response.status, error: "invalid_answer",
      });
    }
    return data;
  }

  function checkedPrediction(answer) {
    const valid = answer && typeof answer === "object" &&
      typeof answer.failure_probability === "number" &&
      typeof answer.failure_predicted === "boolean" &&
      typeof answer.threshold === "number";
    if (!valid) {
      throw new ApiProblem("The API answered a prediction without a probability, decision or threshold.", {
        error: "invalid_answer",
      });
    }
    return {
      probability: answer.failure_probability,
      predicted: answer.failure_predicted,
      threshold: answer.threshold,
      modelVersion: answer.model_version ?? null,
    };
  }

  // "field torque_nm: -1.0 is outside ..." -> "-1.0 is outside ..." (the form names the field)
  function withoutLocation(text) {
    return text.replace(/^(?:[^:]*?, )?field [^:]+: /, "");
  }

  function capitalised(text) {
    return text ? text[0].toUpperCase() + text.slice(1) : text;
  }

  function problemText(error) {
    return error instanceof ApiProblem ? capitalised(error.message) : `Unexpected error: ${error}`;
  }

  function show(region, text, kind) {
    region.textContent = text;
    region.className = `message${kind ? ` message--${kind}` : ""}`;
  }

  // ---- one reading -------------------------------------------------------------------------------
  function clearInvalid() {
    for (const element of form.querySelectorAll("[aria-invalid]")) {
      element.removeAttribute("aria-invalid");
    }
  }

  function markInvalid(name) {
    const input = fieldNames.includes(name) ? $(name) : null;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  function formProblem() {
    for (const name of fieldNames) {
      const input = $(name);
      const validity = input.validity;
      const label = fieldLabel(name);
      if (validity.valueMissing || validity.badInput) {
        return { field: name, text: `${label}: ${validity.badInput ? "not a number" : "missing"}.` };
      }
      if (validity.rangeUnderflow || validity.rangeOverflow) {
        const unit = schema.units[name] ? ` ${schema.units[name]}` : "";
        return {
          field: name,
          text: `${label}: ${input.value} is outside the plausible range ` +
            `${formatNumber(input.min)}–${formatNumber(input.max)}${unit}.`,
        };
      }
      if (name === "type" && !schema.types.includes(input.value)) {
        return { field: name, text: `${label}: choose one of ${schema.types.join(", ")}.` };
      }
    }
    return null;
  }

  function readForm() {
    const reading = {};
    for (const name of fieldNames) {
      reading[name] = name === "type" ? $(name).value : Number($(name).value);
    }
    return reading;
  }

  function fillForm(reading) {
    for (const name of fieldNames) {
      if (name in reading) $(name).value = String(reading[name]);
    }
    clearInvalid();
    updateDerived();
  }

  function failureModes(reading) {
    const difference = reading.process_temperature_k - reading.air_temperature_k;
    const speed = reading.rotational_speed_rpm;
    const power = (reading.torque_nm * speed * 2 * Math.PI) / 60;
    const strain = reading.tool_wear_min * reading.torque_nm;
    const limit = OVERSTRAIN_LIMIT_MIN_NM[reading.type];
    const [low, high] = POWER_RANGE_W;
    const modes = [
      {
        id: "heat",
        title: "Heat dissipation failure",
        met: difference < HEAT_MAX_DIFFERENCE_K && speed < HEAT_MAX_SPEED_RPM,
        detail: `process − air temperature ${formatNumber(difference, 1)} K and speed ` +
          `${formatNumber(speed)} rpm (fails when both are below ` +
          `${formatNumber(HEAT_MAX_DIFFERENCE_K)} K and ${formatNumber(HEAT_MAX_SPEED_RPM)} rpm)`,
      },
      {
        id: "power",
        title: "Power failure",
        met: power < low || power > high,
        detail: `power ${formatNumber(power, 0)} W (fails outside ${formatNumber(low)}–` +
          `${formatNumber(high)} W)`,
      },
    ];
    if (limit !== undefined) {
      modes.push({
        id: "overstrain",
        title: "Overstrain failure",
        met: strain > limit,
        detail: `tool wear × torque ${formatNumber(strain, 0)} min·Nm (fails above ` +
          `${formatNumber(limit)} for type ${reading.type})`,
      });
    }
    return modes;
  }

  // The failure-mode rules only for readings the page takes: for anything else they are nonsense.
  function updateDerived() {
    const list = $("derived");
    const reading = readForm();
    const invalid = formProblem() !== null ||
      numericFields.some((name) => $(name).value === "" || !Number.isFinite(reading[name]));
    $("derived-panel").hidden = invalid;
    if (invalid) {
      list.replaceChildren();
      return;
    }
    list.replaceChildren(
      ...failureModes(reading).map((mode) => {
        const item = document.createElement("li");
        item.className = mode.met ? "rule rule--met" : "rule";
        item.dataset.rule = mode.id;
        const verdict = document.createElement("strong");
        verdict.textContent = `${mode.title}: ${mode.met ? "rule met" : "not met"}`;
        item.append(verdict, ` — ${mode.detail}`);
        return item;
      }),
    );
  }

  function renderResult(result) {
    const { probability, predicted, threshold, modelVersion } = result;
    const clamp = (value) => Math.min(Math.max(value, 0), 1);
    const value = $("gauge-value");
    value.setAttribute("stroke-dasharray", `${clamp(probability) * 100} 100`);
    value.classList.toggle("gauge__value--failure", predicted);
    const angle = Math.PI * (1 - clamp(threshold));
    const marker = $("gauge-threshold");
    const point = (radius) => [100 + radius * Math.cos(angle), 104 - radius * Math.sin(angle)];
    const [x1, y1] = point(64);
    const [x2, y2] = point(98);
    marker.setAttribute("x1", x1.toFixed(2));
    marker.setAttribute("y1", y1.toFixed(2));
    marker.setAttribute("x2", x2.toFixed(2));
    marker.setAttribute("y2", y2.toFixed(2));
    marker.dataset.threshold = String(threshold);
    $("gauge-threshold-title").textContent = `Decision threshold ${formatPercent(threshold)}`;
    $("gauge-percent").textContent = formatPercent(probability);
    $("gauge-title").textContent =
      `Model score ${formatPercent(probability)}; the threshold is ${formatPercent(threshold)}`;
    const decision = $("decision");
    decision.textContent = predicted ? "Failure predicted" : "No failure predicted";
    decision.className = `decision ${predicted ? "decision--failure" : "decision--ok"}`;
    decision.dataset.predicted = String(predicted);
    $("probability").textContent = formatPercent(probability);
    $("threshold").textContent = formatPercent(threshold);
    $("model-version").textContent = modelVersion === null ? "unknown" : String(modelVersion);
    const box = $("result");
    box.hidden = false;
    box.classList.remove("result--stale");
  }

  // "Why": one bar per reason, from a centre line, right for raising the risk and left for
  // lowering it, scaled to the strongest; each with the value in its unit. Bars are SVG
  // attributes, never inline styles (the Content-Security-Policy allows none).
  function renderWhy(explanation, reading) {
    const section = $("why");
    const reasons = explanation && Array.isArray(explanation.contributions)
      ? explanation.contributions
        .filter((item) => item && typeof item.contribution === "number" && item.direction !== "none")
        .slice(0, WHY_BARS)
      : [];
    section.hidden = reasons.length === 0;
    if (reasons.length === 0) {
      $("why-bars").replaceChildren();
      return;
    }
    const largest = Math.max(...reasons.map((item) => Math.abs(item.contribution)));
    $("why-bars").replaceChildren(
      ...reasons.map((item) => {
        const row = document.createElement("li");
        row.className = `why__reason why__reason--${item.direction}`;
        row.dataset.feature = String(item.feature);
        row.dataset.direction = String(item.direction);
        const label = document.createElement("span");
        label.className = "why__label";
        label.textContent = capitalised(String(item.label || item.feature));
        const value = document.createElement("span");
        value.className = "why__value";
        value.textContent = item.feature === "type_code"
          ? `type ${reading.type}`
          : formatNumber(item.value, Math.abs(item.value) >= 100 ? 0 : undefined) +
            (item.unit ? ` ${item.unit}` : "");
        const bar = document.createElementNS(SVG_NS, "svg");
        bar.setAttribute("class", "why__bar");
        bar.setAttribute("viewBox", "0 0 100 10");
        bar.setAttribute("preserveAspectRatio", "none");
        bar.setAttribute("aria-hidden", "true");
        const axis = document.createElementNS(SVG_NS, "line");
        axis.setAttribute("class", "why__axis");
        for (const [name, number] of [["x1", 50], ["x2", 50], ["y1", 0], ["y2", 10]]) {
          axis.setAttribute(name, String(number));
        }
        const rect = document.createElementNS(SVG_NS, "rect");
        const length = largest > 0 ? (Math.abs(item.contribution) / largest) * 50 : 0;
        rect.setAttribute("x", (item.contribution > 0 ? 50 : 50 - length).toFixed(2));
        rect.setAttribute("y", "1");
        rect.setAttribute("width", length.toFixed(2));
        rect.setAttribute("height", "8");
        bar.append(rect, axis);
        const effect = document.createElement("span");
        effect.className = "why__effect";
        const sign = item.contribution > 0 ? "+" : "−";
        effect.textContent = `${item.direction === "raises" ? "raises" : "lowers"} risk ` +
          `(${sign}${formatNumber(Math.abs(item.contribution), 2)})`;
        row.append(label, value, bar, effect);
        return row;
      }),
    );
  }

  // "How sure": the calibrated probability as people read a risk ("about 3 in 100").
  function inWords(probability) {
    const p = Math.min(Math.max(probability, 0), 1);
    if (p >= 0.995) return "more than 99 in 100";
    if (p >= 0.0095) return `about ${Math.round(p * 100)} in 100`;
    if (p >= 0.001) return `about ${Math.round(p * 1000)} in 1,000`;
    return "fewer than 1 in 1,000";
  }

  function renderSure(probability) {
    const section = $("sure");
    const valid = typeof probability === "number" && Number.isFinite(probability);
    section.hidden = !valid;
    if (!valid) return;
    section.dataset.probability = String(probability);
    $("sure-text").textContent =
      `${capitalised(inWords(probability))} machines with these readings fail ` +
      `(${formatPercent(probability)}).`;
  }

  // "Which failure": the failure-mode model's likely mode; "no failure" said plainly when that
  // is both models' answer. TWF and RNF are random in the data set: a hint at most.
  const UNPREDICTABLE_MODES = ["twf", "rnf"];

  function renderWhich(mode, predicted) {
    const section = $("which");
    const valid = mode && typeof mode === "object" && typeof mode.mode === "string" &&
      typeof mode.probability === "number" && mode.probabilities &&
      typeof mode.probabilities.none === "number";
    section.hidden = !valid;
    if (!valid) return;
    const name = String(mode.name || mode.mode);
    const none = mode.probabilities.none;
    const text = $("which-text");
    const note = $("which-note");
    if (!predicted && none >= 0.5) {
      section.dataset.mode = "none";
      text.textContent = "No failure is likely.";
      text.className = "insight__answer insight__answer--ok";
      note.textContent = `The failure-mode model gives no failure ${formatPercent(none)}; ` +
        `should one come anyway, most likely a ${name} failure (${formatPercent(mode.probability)} ` +
        "of such failures).";
      return;
    }
    section.dataset.mode = mode.mode;
    text.textContent = `Most likely: ${name} failure (${formatPercent(mode.probability)} ` +
      "of failures with these readings)";
    text.className = "insight__answer insight__answer--failure";
    note.textContent = UNPREDICTABLE_MODES.includes(mode.mode)
      ? "Tool wear and random failures happen at random in the training data: no model can " +
        "predict them from the readings, so take this as a hint only."
      : "From a model of the data set's failure-mode labels (heat dissipation, power, " +
        "overstrain, tool wear, random), given these readings.";
  }

  // The model card: what the model is, how good on held-out data, and where not to trust it.
  function cardFigure(value, digits) {
    return typeof value === "number" && Number.isFinite(value) ? formatNumber(value, digits) : "–";
  }

  function cardFacts(card) {
    const facts = [];
    const splits = (card.data && card.data.splits) || {};
    const data = Object.entries(splits)
      .filter(([, split]) => split && typeof split.rows === "number")
      .map(([name, split]) =>
        `${name} ${formatNumber(split.rows, 0)} rows (${cardFigure(split.failures, 0)} failures)`);
    if (data.length) facts.push(["data", "Data", data.join(", ")]);
    const metrics = card.metrics || {};
    if (typeof metrics.f1 === "number") {
      facts.push(["test", "Test", `F1 ${cardFigure(metrics.f1, 3)}, precision ` +
        `${cardFigure(metrics.precision, 3)}, recall ${cardFigure(metrics.recall, 3)} ` +
        `(${cardFigure(metrics.failures, 0)} failures in ${cardFigure(metrics.rows, 0)} rows)`]);
    }
    if (typeof metrics.expected_cost_per_1000 === "number") {
      const costs = metrics.costs || {};
      const priced = Object.entries(costs)
        .map(([name, value]) => `${name.replace(/_/g, " ")} ${cardFigure(value, 0)}`).join(", ");
      facts.push(["cost", "Expected cost", `${cardFigure(metrics.expected_cost_per_1000, 0)} ` +
        `per 1,000 machines${priced ? ` (${priced})` : ""}`]);
    }
    const calibration = card.calibration || {};
    const ece = calibration.ece || {};
    if (typeof ece.calibrated === "number") {
      const met = calibration.target_met === true ? "met" : "not met";
      facts.push(["calibration", "Calibration", `${calibration.method || "?"}; ECE ` +
        `${cardFigure(ece.calibrated, 4)} (target ≤ ${cardFigure(calibration.ece_target, 2)}: ` +
        `${met})`]);
    }
    const modes = card.failure_modes || {};
    const perMode = modes.per_mode || {};
    const unpredictable = Array.isArray(modes.unpredictable) ? modes.unpredictable : [];
    const modeF1 = Object.entries(perMode)
      .filter(([, item]) => item && typeof item.f1 === "number")
      .map(([mode, item]) =>
        `${mode.toUpperCase()} ${cardFigure(item.f1, 2)}` +
        (unpredictable.includes(mode) ? " (unpredictable)" : ""));
    if (modeF1.length) {
      const met = modes.target_met === true ? "met" : "not met";
      facts.push(["modes", "Failure modes (F1)", `${modeF1.join(", ")}; macro-F1 over ` +
        `${(modes.rule_modes || []).map((mode) => String(mode).toUpperCase()).join(", ")} ` +
        `${cardFigure(modes.rule_modes_macro_f1, 3)} (target ≥ ` +
        `${cardFigure(modes.target_macro_f1, 2)}: ${met})`]);
    }
    if (typeof card.intended_use === "string" && card.intended_use) {
      facts.push(["use", "Intended use", card.intended_use]);
    }
    return facts;
  }

  function renderCard(card) {
    const box = $("model-card");
    const valid = card && typeof card === "object" && !Array.isArray(card);
    box.hidden = !valid;
    if (!valid) {
      $("model-card-facts").replaceChildren();
      $("model-card-limits").replaceChildren();
      return;
    }
    $("model-card-facts").replaceChildren(
      ...cardFacts(card).flatMap(([key, term, text]) => {
        const dt = cell("dt", term);
        const dd = cell("dd", text);
        dd.dataset.fact = key;
        return [dt, dd];
      }),
    );
    const limits = Array.isArray(card.known_limits)
      ? card.known_limits.filter((limit) => typeof limit === "string" && limit)
      : [];
    $("model-card-limits").replaceChildren(
      ...(limits.length ? limits : ["None recorded."]).map((limit) => cell("li", limit)),
    );
  }

  // Readings that cannot be checked: the error, and neither an earlier answer nor the rules.
  function showOnlyError(text) {
    show(message, text, "error");
    $("result").hidden = true;
    $("derived-panel").hidden = true;
    $("preset-note").hidden = true;
  }

  let latestCheck = 0; // only the answer to the latest request is shown

  async function predictOne(event) {
    event.preventDefault();
    const check = ++latestCheck;
    clearInvalid();
    const problem = formProblem();
    const button = $("predict-button");
    if (problem) {
      button.disabled = false;
      form.removeAttribute("aria-busy");
      showOnlyError(problem.text);
      markInvalid(problem.field);
      return;
    }
    const reading = readForm();
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    show(message, "Checking…", "busy");
    try {
      // ?explain=true: the answer also says why (the "Why" chart); the body stays one reading.
      const answer = await callApi("predict?explain=true", {
        method: "POST",
        body: JSON.stringify(reading),
        contentType: "application/json",
      });
      const result = checkedPrediction(answer);
      if (check !== latestCheck) return;
      renderResult(result);
      renderWhy(answer.explanation, reading);
      renderSure(answer.probability);
      renderWhich(answer.failure_mode, result.predicted);
      renderCard(answer.model_card);
      show(
        message,
        `${result.predicted ? "Failure predicted" : "No failure predicted"}: model score ` +
          `${formatPercent(result.probability)} (threshold ${formatPercent(result.threshold)}).`,
        result.predicted ? "failure" : "ok",
      );
      addToHistory(reading, result);
    } catch (error) {
      if (check !== latestCheck) return;
      const field = error instanceof ApiProblem ? error.field : null;
      const text = field
        ? `${fieldLabel(field)}: ${capitalised(withoutLocation(error.message))}`
        : problemText(error);
      if (error instanceof ApiProblem && error.status === 400) {
        showOnlyError(text); // the API refused these readings: the page's rules would mislead
      } else {
        show(message, text, "error"); // the readings are fine, the answer did not come
      }
      if (field) markInvalid(field);
    } finally {
      if (check === latestCheck) {
        button.disabled = false;
        form.removeAttribute("aria-busy");
      }
    }
  }

  // ---- recent checks -----------------------------------------------------------------------------
  function loadHistory() {
    try {
      const items = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(items)
        ? items.filter((item) => item && item.reading && typeof item.probability === "number")
        : [];
    } catch {
      return [];
    }
  }

  let history = loadHistory();

  function saveHistory() {
    try {
      if (history.length) localStorage.setItem(HISTORY_KEY, JSON.stringify(history));
      else localStorage.removeItem(HISTORY_KEY);
    } catch {
      // Storage disabled or full: the history lasts as long as the page.
    }
  }

  function addToHistory(reading, result) {
    history = [
      { at: new Date().toISOString(), reading, ...result },
      ...history,
    ].slice(0, HISTORY_SIZE);
    saveHistory();
    renderHistory();
  }

  function readingSummary(reading) {
    return fieldNames
      .map((name) =>
        name === "type"
          ? reading[name]
          : `${formatNumber(reading[name])}${schema.units[name] ? ` ${schema.units[name]}` : ""}`,
      )
      .join(" · ");
  }

  function renderHistory() {
    const list = $("history");
    $("history-empty").hidden = history.length > 0;
    $("clear-history").disabled = history.length === 0;
    list.replaceChildren(
      ...history.map((item) => {
        const entry = document.createElement("li");
        entry.dataset.testid = "history-item";
        const button = document.createElement("button");
        button.type = "button";
        button.className = "history__entry";
        const verdict = document.createElement("span");
        verdict.className = `badge ${item.predicted ? "badge--failure" : "badge--ok"}`;
        verdict.textContent = item.predicted ? "Failure" : "No failure";
        const probability = document.createElement("span");
        probability.className = "history__probability";
        probability.textContent = formatPercent(item.probability);
        const when = document.createElement("time");
        when.dateTime = item.at;
        when.textContent = new Date(item.at).toLocaleString(undefined, {
          dateStyle: "short",
          timeStyle: "medium",
        });
        const readings = document.createElement("span");
        readings.className = "history__readings";
        readings.textContent = readingSummary(item.reading);
        button.append(verdict, " ", probability, " ", when, readings);
        button.setAttribute(
          "aria-label",
          `Load ${verdict.textContent}, ${probability.textContent}, ${when.textContent}: ` +
            readings.textContent,
        );
        button.addEventListener("click", () => {
          fillForm(item.reading);
          $("preset-note").hidden = true;
          markStale();
          show(message, `Loaded the readings checked at ${when.textContent}.`);
        });
        entry.append(button);
        return entry;
      }),
    );
  }

  // ---- many readings -----------------------------------------------------------------------------
  // The file goes to the API as it is: the API reads it (header line, column order, the data
  // set's layout) and says what is wrong with it, so the page and the API take the same files
  // and give the same message. Each answer names its line in the file (first line = 1).
  const RESULT_COLUMNS = ["failure_probability", "failure_predicted", "threshold", "model_version"];
  const ID_COLUMNS = { udi: "UDI", product_id: "Product ID" };
  const LINE_BREAK = /\r\n|\n|\r/; // as the API splits lines
  const blankLine = (line) => /^[ \t,]*$/.test(line); // as the API skips them

  let batchFile = null; // the chosen file, until the text is edited
  let batchResults = [];
  let batchLines = [];

  function cell(tag, text, className) {
    const element = document.createElement(tag);
    element.textContent = text;
    if (className) element.className = className;
    return element;
  }

  function svg(tag, attributes, text) {
    const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function checkedBatchAnswer(answer) {
    const answers = Array.isArray(answer) ? answer : [answer];
    return answers.map((item) => {
      const prediction = checkedPrediction(item);
      if (!Number.isInteger(item.line)) {
        throw new ApiProblem("The API answered a prediction without its line in the file.", {
          error: "invalid_answer",
        });
      }
      const ids = {};
      for (const name of Object.keys(ID_COLUMNS)) {
        if (typeof item[name] === "string") ids[name] = item[name];
      }
      return { ...prediction, line: item.line, ids };
    });
  }

  // The chart's x labels (line numbers) where they fit: never two on top of each other, however
  // many bars and however narrow the screen. Measured once the chart is on screen.
  function lineLabels(chart, results, start, slot, bounds) {
    const [left, right, y] = bounds;
    const widest = String(Math.max(...results.map((result) => result.line)));
    const probe = svg("text", { class: "chart__label", x: 0, y }, widest);
    chart.append(probe);
    let width = 0;
    try {
      width = probe.getBBox().width;
    } catch {
      width = 0; // not rendered (hidden): estimate below
    }
    probe.remove();
    if (!width) width = widest.length * 6;
    const gap = 4;
    const labels = [];
    let end = -Infinity;
    results.forEach((result, index) => {
      const centre = Math.min(
        Math.max(start + (index + 0.5) * slot, left + width / 2),
        right - width / 2,
      );
      if (centre - width / 2 < end + gap) return;
      end = centre + width / 2;
      labels.push(svg("text", {
        class: "chart__label", x: centre.toFixed(2), y, "text-anchor": "middle",
        "data-testid": "batch-line-label",
      }, String(result.line)));
    });
    return labels;
  }

  function renderChart(results, threshold) {
    const chart = $("batch-chart");
    const [width, height, left, right, top, bottom] = [320, 150, 34, 6, 10, 22];
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const y = (probability) => top + plotHeight * (1 - Math.min(Math.max(probability, 0), 1));
    const slot = Math.min(plotWidth / results.length, 32);
    const start = left + (plotWidth - slot * results.length) / 2;
    chart.replaceChildren(svg("title", { id: "batch-chart-title" }, $("batch-chart-title").textContent));
    const children = [];
    for (const tick of [0, 0.5, 1]) {
      children.push(svg("line", { class: "chart__grid", x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
      children.push(svg("text", { class: "chart__label", x: left - 4, y: y(tick) + 3, "text-anchor": "end" },
        `${tick * 100} %`));
    }
    results.forEach((result, index) => {
      const top_ = y(result.probability);
      const bar = svg("rect", {
        class: `chart__bar${result.predicted ? " chart__bar--failure" : ""}`,
        x: (start + index * slot + slot * 0.1).toFixed(2),
        y: top_.toFixed(2),
        width: Math.max(slot * 0.8, 0.3).toFixed(2),
        height: Math.max(y(0) - top_, 0.5).toFixed(2),
        "data-testid": "batch-bar",
      });
      bar.append(svg("title", {}, `Line ${result.line}: ${formatPercent(result.probability)}, ` +
        `${result.predicted ? "failure predicted" : "no failure predicted"}`));
      children.push(bar);
    });
    children.push(...lineLabels(chart, results, start, slot, [left, width - right, height - 6]));
    if (threshold !== null) {
      children.push(svg("line", {
        class: "chart__threshold", x1: left, x2: width - right, y1: y(threshold), y2: y(threshold),
        "data-testid": "batch-threshold",
      }));
      // Above the line, or below it when the line is at the very top.
      const above = y(threshold) - 3;
      children.push(svg("text", {
        class: "chart__threshold-label", x: width - right, y: above - 7 < 0 ? y(threshold) + 9 : above,
        "text-anchor": "end",
      }, `threshold ${formatPercent(threshold)}`));
    }
    chart.append(...children);
  }

  function clearBatch() {
    batchResults = [];
    batchLines = [];
    $("batch-result").hidden = true;
    $("batch-download").hidden = true;
    $("batch-rows").replaceChildren();
    $("batch-chart").replaceChildren(svg("title", { id: "batch-chart-title" }, "Model score per line"));
  }

  function renderBatch(results) {
    const failures = results.filter((result) => result.predicted);
    const threshold = results[0].threshold;
    const versions = [...new Set(results.map((result) => result.modelVersion))];
    const ids = Object.keys(ID_COLUMNS).filter((name) => results.some((result) => name in result.ids));
    $("batch-summary").textContent =
      `${formatNumber(results.length)} ${results.length === 1 ? "reading" : "readings"} checked: ` +
      `${formatNumber(failures.length)} with a failure predicted` +
      (failures.length && failures.length <= 10
        ? ` (line${failures.length === 1 ? "" : "s"} ${failures.map((r) => r.line).join(", ")})`
        : "") +
      `. Threshold ${formatPercent(threshold)}, model version ${versions.map((v) => v ?? "unknown").join(", ")}.`;
    $("batch-result").hidden = false; // before the chart: its labels are measured on screen
    renderChart(results, threshold);
    const head = $("batch-head");
    head.replaceChildren(
      cell("th", "Line"),
      ...ids.map((name) => cell("th", ID_COLUMNS[name])),
      cell("th", "As in the file"),
      cell("th", "Model score"),
      cell("th", "Decision"),
    );
    for (const th of head.children) th.scope = "col";
    const shown = results.slice(0, TABLE_ROW_LIMIT);
    $("batch-rows").replaceChildren(
      ...shown.map((result) => {
        const row = document.createElement("tr");
        row.dataset.testid = "batch-row";
        row.className = result.predicted ? "row--failure" : "";
        const line = cell("th", String(result.line));
        line.scope = "row";
        row.append(
          line,
          ...ids.map((name) => cell("td", result.ids[name] ?? "")),
          cell("td", result.text, "line-text"),
          cell("td", formatPercent(result.probability), "number"),
          cell("td", result.predicted ? "Failure predicted" : "No failure", "decision-cell"),
        );
        return row;
      }),
    );
    const truncated = $("batch-truncated");
    truncated.hidden = results.length <= TABLE_ROW_LIMIT;
    truncated.textContent = `The table shows the first ${formatNumber(TABLE_ROW_LIMIT)} of ` +
      `${formatNumber(results.length)} readings; download the results for all of them.`;
    $("batch-download").hidden = false;
  }

  let latestBatch = 0;

  async function predictMany(event) {
    event.preventDefault();
    const batch = ++latestBatch;
    const file = batchFile;
    const button = $("batch-button");
    button.disabled = false;
    let text = $("csv-text").value;
    if (!file && !text.trim()) {
      clearBatch();
      show(batchMessage, "Choose a CSV file or paste readings first.", "error");
      return;
    }
    button.disabled = true;
    show(batchMessage, `Checking ${file ? file.name : "the readings"}…`, "busy");
    try {
      const bytes = file ? await file.arrayBuffer() : null; // the file's bytes, as they are
      if (file) text = new TextDecoder().decode(bytes); // to show its lines
      const answer = await callApi("predict", {
        method: "POST",
        body: bytes || text,
        contentType: "text/csv",
      });
      const predictions = checkedBatchAnswer(answer);
      if (batch !== latestBatch) return;
      batchLines = text.replace(/^\ufeff/, "").split(LINE_BREAK);
      batchResults = predictions.map((prediction) => ({
        ...prediction,
        text: batchLines[prediction.line - 1] ?? "",
      }));
      renderBatch(batchResults);
      const failures = batchResults.filter((result) => result.predicted).length;
      show(batchMessage, `Checked ${formatNumber(batchResults.length)} readings: ${formatNumber(failures)} ` +
        "with a failure predicted.", failures ? "failure" : "ok");
    } catch (error) {
      if (batch !== latestBatch) return;
      clearBatch(); // no earlier results under a message about this file
      show(batchMessage, problemText(error), "error");
    } finally {
      if (batch === latestBatch) button.disabled = false;
    }
  }

  // The file back with four columns added: its header line (if it has one) names them.
  function downloadResults() {
    if (!batchResults.length) return;
    const byLine = new Map(batchResults.map((result) => [result.line, result]));
    const firstReading = batchResults[0].line;
    const headerIndex = batchLines.findIndex((line) => !blankLine(line));
    const lines = [];
    batchLines.forEach((line, index) => {
      const result = byLine.get(index + 1);
      if (result) {
        lines.push([line, result.probability, result.predicted, result.threshold,
          result.modelVersion ?? ""].join(","));
      } else if (index === headerIndex && index + 1 < firstReading) {
        lines.push([line, ...RESULT_COLUMNS].join(","));
      }
    });
    const url = URL.createObjectURL(new Blob([`${lines.join("\n")}\n`], { type: "text/csv" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = "failure-predictions.csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async function chooseFile() {
    const file = $("csv-file").files[0];
    if (!file) return;
    try {
      $("csv-text").value = await file.text(); // to see; the file itself is sent
    } catch (error) {
      clearBatch();
      show(batchMessage, `Could not read ${file.name}: ${error.message}`, "error");
      return;
    }
    batchFile = file;
    $("batch-form").requestSubmit();
  }

  // ---- wiring ------------------------------------------------------------------------------------
  function markStale() {
    const box = $("result");
    if (!box.hidden) box.classList.add("result--stale");
  }

  // A preset fills the form; Check asks the model (so each check is in the history once).
  function loadPreset(name) {
    const preset = PRESETS[name];
    fillForm(preset.reading);
    markStale();
    const met = failureModes(preset.reading).filter((mode) => mode.met);
    const note = $("preset-note");
    note.textContent = met.length
      ? `${preset.title} example: ${met.map((mode) => mode.detail).join("; ")}.`
      : `${preset.title} example: no failure-mode rule of the data set is met.`;
    note.hidden = false;
    show(message, `Loaded the ${preset.title.toLowerCase()} example: select Check to ask the model.`);
  }

  form.addEventListener("submit", predictOne);
  form.addEventListener("input", () => {
    updateDerived();
    markStale();
    $("preset-note").hidden = true;
  });
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => loadPreset(button.dataset.preset));
  }
  $("clear-history").addEventListener("click", () => {
    history = [];
    saveHistory();
    renderHistory();
    show(message, "Cleared the recent checks.");
  });
  $("batch-form").addEventListener("submit", predictMany);
  $("csv-file").addEventListener("change", chooseFile);
  $("csv-text").addEventListener("input", () => {
    batchFile = null; // edited: the text is what gets sent
  });
  $("batch-download").addEventListener("click", downloadResults);
  $("settings-form").addEventListener("submit", (event) => event.preventDefault());

  try {
    apiKeyInput.value = sessionStorage.getItem(API_KEY_KEY) || "";
  } catch {
    // No session storage: the key lasts as long as the page.
  }
  apiKeyInput.addEventListener("input", () => {
    try {
      if (apiKeyInput.value) sessionStorage.setItem(API_KEY_KEY, apiKeyInput.value);
      else sessionStorage.removeItem(API_KEY_KEY);
    } catch {
      // As above.
    }
  });

  updateDerived();
  renderHistory();
  loadSchema();
})();
