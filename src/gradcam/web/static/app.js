// The gradcam page: upload, explain over the HTTP API (one method, or several side by side), recolour and
// blend in the browser, download the full-size overlay from the server. The view's settings live in the
// URL's query (view, model, method, methods, layer, class, colormap, normalize, alpha, precision), so that
// a view can be shared: opening the URL and uploading a photo shows the same view of that photo.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  file: null, result: null, compare: null, task: null, luts: {}, labels: [], stages: [], automatic: "",
  mapPixels: null, photoPixels: null, compareMax: 8,
  compared: [],  // the methods ticked for the comparison, in the order they were ticked (the grid's order)
  chosenClass: null,  // the class the user chose (a click, a search, the URL); null: the prediction
  pendingClass: null,  // the URL's class, for the first photo
};

function setStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = kind;
}

// The server's explanation of a failed response (its JSON "detail").
async function reason(response) {
  const body = await response.json().catch(() => ({}));
  if (body.detail === undefined) return response.statusText || `HTTP ${response.status}`;
  return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await reason(response));
  return response.json();
}

function fill(select, items, selected) {
  select.replaceChildren(...items.map(([value, text]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    option.selected = value === selected;
    return option;
  }));
}

// The <img> of a result, made when there is something to show (the page holds no <img> without a src).
function setPicture(id, src, alt) {
  let image = $(id);
  if (!image) {
    image = document.createElement("img");
    image.id = id;
    image.alt = alt || id;
    const figure = document.querySelector(`[data-picture="${id}"]`);
    figure.insertBefore(image, figure.firstChild);
  }
  image.src = src;
  return image;
}

const view = () => document.querySelector('input[name="view"]:checked').value;

function setView(name) {
  const radio = document.querySelector(`input[name="view"][value="${name}"]`);
  if (radio) radio.checked = true;
  showView();
}

// What each view needs, and nothing else: the comparison is for classification.
function showView() {
  const compare = view() === "compare";
  document.querySelectorAll(".single-only").forEach((e) => { e.hidden = compare; });
  $("compare-methods").hidden = !compare;
  if (compare && $("task").value !== "classification") $("task").value = "classification";
  $("download").hidden = compare || !state.result;
  showTaskOptions();
  showResults();
}

// The result of the current view, if there is one.
function showResults() {
  const compare = view() === "compare", task = $("task").value !== "classification" && !compare;
  const shown = compare ? state.compare : task ? state.task : state.result;
  $("pictures").hidden = compare || task || !state.result;
  $("grid").hidden = !compare || !state.compare;
  $("task-result").hidden = !task || !state.task;
  $("prediction").hidden = task || !shown;
  if (shown && !task) showPrediction(shown);
  drawLegend();
}

async function loadModel() {
  const model = $("model").value;
  const [layers, labels] = await Promise.all([
    getJSON(`/api/layers?model=${encodeURIComponent(model)}`),
    getJSON(`/api/labels?model=${encodeURIComponent(model)}`),
  ]);
  fill($("layer"), [["", `automatic (${layers.automatic})`],
    ...layers.layers.map((l) => [l.name, `${l.name}  ${l.shape.join("×")}${l.name === layers.automatic ? "  ← automatic" : ""}`])], "");
  state.stages = layers.stages || [];
  state.automatic = layers.automatic;
  $("stage").max = String(Math.max(0, state.stages.length - 1));
  $("stage-label").hidden = state.stages.length < 2;
  followLayer();
  state.labels = labels.labels;
  $("labels").replaceChildren(...labels.labels.map((label) => {
    const option = document.createElement("option");
    option.value = label;
    return option;
  }));
}

// The depth slider: one stop per resolution stage, shallow to deep (GET /api/layers' "stages").
function stageOf(layer) {
  return state.stages.indexOf(layer || state.automatic);
}

function followLayer() {
  const k = stageOf($("layer").value);
  if (k >= 0) $("stage").value = String(k);
  showStage(k >= 0);
}

function showStage(onStage = true) {
  const name = state.stages[Number($("stage").value)] || "";
  const text = onStage ? `${name} (stage ${Number($("stage").value) + 1} of ${state.stages.length})`
    : `${$("layer").value || state.automatic} (not a stage's last layer)`;
  $("stage-name").textContent = text;
  $("stage").setAttribute("aria-valuetext", text);
}

function chooseStage() {
  const name = state.stages[Number($("stage").value)];
  $("layer").value = name === state.automatic ? "" : name;
  showStage();
  rerun();
}

function methodBoxes(methods, chosen) {
  state.compared = [...chosen];
  $("method-boxes").replaceChildren(...methods.map((m) => {
    const label = document.createElement("label");
    label.title = m.description;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = m.name;
    box.checked = chosen.includes(m.name);
    box.addEventListener("change", () => {
      state.compared = state.compared.filter((name) => name !== box.value);
      if (box.checked) state.compared.push(box.value);
      limitMethods();
      rerun();
    });
    const name = document.createElement("span");
    name.textContent = m.name;
    label.append(box, name);
    return label;
  }));
  limitMethods();
}

const comparedMethods = () => state.compared;

// At most compare_max methods: the others are disabled while that many are ticked.
function limitMethods() {
  const count = comparedMethods().length;
  $("method-boxes").querySelectorAll("input").forEach((box) => { box.disabled = !box.checked && count >= state.compareMax; });
  $("compare-count").textContent = `(${count} of at most ${state.compareMax})`;
}

async function init() {
  try {
    const [models, methods, colormaps, tasks] = await Promise.all([
      getJSON("/api/models"), getJSON("/api/methods"), getJSON("/api/colormaps"), getJSON("/api/tasks")]);
    const query = new URLSearchParams(location.search);
    const pick = (key, values, fallback) => (values.includes(query.get(key)) ? query.get(key) : fallback);
    const names = methods.methods.map((m) => m.name);
    fill($("model"), models.models.map((m) => [m, m]), pick("model", models.models, models.default));
    fill($("method"), methods.methods.map((m) => [m.name, m.name]), pick("method", names, methods.default));
    [...$("method").options].forEach((o, i) => { o.title = methods.methods[i].description; });
    state.compareMax = methods.compare_max || 8;
    const asked = (query.get("methods") || "").split(",").filter((m) => names.includes(m));
    methodBoxes(methods.methods, asked.length ? asked.slice(0, state.compareMax) : names.slice(0, 4));
    fill($("colormap"), colormaps.colormaps.map((c) => [c, c]), pick("colormap", colormaps.colormaps, "jet"));
    fill($("task"), tasks.tasks.map((t) => [t, t]), tasks.default);
    state.luts = colormaps.luts;
    $("normalize").value = pick("normalize", ["minmax", "max"], "minmax");
    $("precision").value = pick("precision", ["fp32", "auto", "bf16"], "fp32");
    const alpha = Number(query.get("alpha"));
    if (query.has("alpha") && alpha >= 0 && alpha <= 1) $("alpha").value = String(alpha);
    await loadModel();
    if (query.get("layer") && [...$("layer").options].some((o) => o.value === query.get("layer"))) {
      $("layer").value = query.get("layer");
      followLayer();
    }
    if (query.get("class")) {
      state.pendingClass = query.get("class");
      $("class-search").value = /^\d+$/.test(state.pendingClass)
        ? (state.labels[Number(state.pendingClass)] || state.pendingClass) : state.pendingClass;
    }
    setView(pick("view", ["single", "compare"], "single"));
    document.body.dataset.ready = "true";
  } catch (error) {
    setStatus(`Could not load the server's options: ${error.message}`, "error");
  }
}

// The page's state in its URL (only what differs from the defaults).
function syncURL() {
  const query = new URLSearchParams();
  const set = (key, value, fallback) => { if (value !== fallback && value !== "" && value !== null) query.set(key, value); };
  set("view", view(), "single");
  set("model", $("model").value, $("model").options[0] ? $("model").options[0].value : "");
  if (view() === "compare") set("methods", comparedMethods().join(","), "");
  else set("method", $("method").value, "gradcam");
  set("layer", $("layer").value, "");
  const chosen = state.chosenClass !== null ? state.chosenClass : state.pendingClass;
  set("class", chosen === null ? null : String(chosen), "");
  set("colormap", $("colormap").value, "jet");
  set("normalize", $("normalize").value, "minmax");
  set("alpha", $("alpha").value, "0.5");
  set("precision", $("precision").value, "fp32");
  const text = query.toString();
  history.replaceState(null, "", text ? `?${text}` : location.pathname);
}

// The options of the chosen task only.
function showTaskOptions() {
  const task = view() === "compare" ? "classification" : $("task").value;
  document.querySelectorAll(".task-option").forEach((label) => {
    label.hidden = !label.dataset.tasks.split(" ").includes(task);
  });
}

// Explain again with what is chosen now, for the class chosen (else the prediction).
function rerun() {
  syncURL();
  if (!state.file) return;
  if (view() === "compare") return compare(state.chosenClass);
  return explain(state.chosenClass);
}

function chooseClass(index) {
  state.chosenClass = index;
  $("class-search").value = index === null ? "" : (state.labels[index] || String(index));
  rerun();
}

async function explain(target = null) {
  if (!state.file) return;
  if (view() === "compare") return compare(target);
  if ($("task").value !== "classification") return explainTask(target);
  const form = new FormData();
  form.append("image", state.file);
  form.append("model", $("model").value);
  form.append("method", $("method").value);
  form.append("precision", $("precision").value);
  form.append("normalize", $("normalize").value);
  if ($("layer").value) form.append("layer", $("layer").value);
  if (target !== null) form.append("target", String(target));
  form.append("colormap", $("colormap").value);
  form.append("alpha", $("alpha").value);
  setStatus(`Explaining with ${$("method").value}…`, "busy");
  try {
    const response = await fetch("/api/explain", { method: "POST", body: form });
    if (response.status === 503) {  // the queue is full: the server says when to try again
      setStatus(await reason(response), "error");
      return;
    }
    if (!response.ok) throw new Error(await reason(response));
    const body = await response.json();
    await show(body);
    const t = body.timings_ms;
    setStatus(`Done in ${t.total} ms (model ${t.explain} ms).`);
  } catch (error) {
    setStatus(`Error: ${error.message}`, "error");
  }
}

// Several methods on the same photo, for the same class: one request, one map per method.
async function compare(target = null) {
  const methods = comparedMethods();
  if (!methods.length) return setStatus("Tick at least one method to compare.", "error");
  const form = new FormData();
  form.append("image", state.file);
  form.append("model", $("model").value);
  form.append("methods", methods.join(","));
  form.append("precision", $("precision").value);
  form.append("normalize", $("normalize").value);
  if ($("layer").value) form.append("layer", $("layer").value);
  if (target !== null) form.append("target", String(target));
  setStatus(`Comparing ${methods.length} method${methods.length > 1 ? "s" : ""}…`, "busy");
  try {
    const response = await fetch("/api/compare", { method: "POST", body: form });
    if (!response.ok) throw new Error(await reason(response));
    const body = await response.json();
    const { width, height } = body.display;
    const photo = await pixels(body.pictures.original, width, height);
    const cells = await Promise.all(body.methods.map(async (entry) => (
      entry.status === "ok" ? { entry, map: await pixels(entry.map, width, height) } : { entry, map: null })));
    if (view() !== "compare") return;  // the user left the comparison meanwhile
    state.compare = body;
    state.compareCells = cells;
    state.comparePhoto = photo;
    buildGrid();
    showResults();
    const skipped = body.methods.filter((e) => e.status !== "ok").length;
    setStatus(`Done in ${body.timings_ms.total} ms: ${body.methods.length - skipped} map${body.methods.length - skipped === 1 ? "" : "s"}` +
      (skipped ? `, ${skipped} method${skipped > 1 ? "s" : ""} without a map (see why in the grid).` : "."));
  } catch (error) {
    setStatus(`Error: ${error.message}`, "error");
  }
}

function buildGrid() {
  const body = state.compare;
  const original = document.createElement("figure");
  original.dataset.method = "";
  const photo = document.createElement("img");
  photo.src = body.pictures.original;
  photo.alt = "the photo";
  const caption = document.createElement("figcaption");
  caption.textContent = "original";
  original.append(photo, caption);
  const figures = state.compareCells.map(({ entry }) => {
    const figure = document.createElement("figure");
    figure.dataset.method = entry.method;
    const title = document.createElement("b");
    title.textContent = entry.method;
    const text = document.createElement("figcaption");
    if (entry.status === "ok") {
      const image = document.createElement("img");
      image.alt = `${entry.method}'s map`;
      image.className = "cell";
      text.append(title, ` · ${entry.layer || "input"} · ${Math.round(entry.ms)} ms`);
      figure.append(image, text);
    } else {
      figure.className = "skipped";
      const why = document.createElement("p");
      why.textContent = `${entry.status === "failed" ? "failed" : "not applicable"}: ${entry.reason}`;
      text.append(title);
      figure.append(text, why);
    }
    return figure;
  });
  $("grid").replaceChildren(original, ...figures);
  recolour();
}

// Another task: one map per object, label or class region, drawn by the server; a click on a detected
// box shows that object's map.
async function explainTask(target) {
  const task = $("task").value;
  const form = new FormData();
  form.append("image", state.file);
  form.append("task", task);
  form.append("model", $("model").value);
  form.append("method", $("method").value);
  if ($("layer").value) form.append("layer", $("layer").value);
  if (target !== null) form.append("class", String(target));
  if (task === "detection" || task === "multilabel") form.append("min_score", $("min-score").value);
  if (task === "embedding") {
    if (!$("reference").files[0]) return setStatus("Choose a reference image to compare with.", "error");
    form.append("reference", $("reference").files[0]);
  }
  if (task === "regression") form.append("negative", String($("negative").checked));
  form.append("colormap", $("colormap").value);
  form.append("alpha", $("alpha").value);
  setStatus(`Explaining (${task}) with ${$("method").value}…`, "busy");
  try {
    const response = await fetch("/api/explain-task", { method: "POST", body: form });
    if (!response.ok) throw new Error(await reason(response));
    const body = await response.json();
    state.task = body;
    $("task-details").textContent = `${body.model} · ${body.method} · ${body.task} · layer ${body.layer}`;
    $("task-captions").replaceChildren(...body.captions.map((caption, k) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = caption;
      button.onclick = () => chooseObject(k);
      item.append(button);
      return item;
    }));
    const whole = body.pictures.objects || body.pictures.panels || body.pictures.overlay;
    setPicture("task-picture", whole, "every explained object or label");
    $("task-hint").textContent = body.boxes ? "click a box to see its object's map" : "";
    chooseObject(0);
    showResults();
    setStatus(`Done in ${body.timings_ms.total} ms.`);
  } catch (error) {
    setStatus(`Error: ${error.message}`, "error");
  }
}

function chooseObject(k) {
  const body = state.task;
  if (!body || k < 0 || k >= body.overlays.length) return;
  setPicture("task-overlay", body.overlays[k], "the chosen object's map");
  $("task-chosen").textContent = body.captions[k];
}

// The detected box under a click (the smallest, where boxes overlap), in the display's pixels.
function boxAt(event) {
  const body = state.task, picture = $("task-picture");
  if (!body || !body.boxes) return -1;
  const x = event.offsetX * body.display.width / picture.clientWidth;
  const y = event.offsetY * body.display.height / picture.clientHeight;
  let best = -1, area = Infinity;
  body.boxes.forEach(([x0, y0, x1, y1], k) => {
    const size = (x1 - x0) * (y1 - y0);
    if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && size < area) [best, area] = [k, size];
  });
  return best;
}

function pixels(url, width, height) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0, width, height);
      resolve(context.getImageData(0, 0, width, height));
    };
    image.onerror = () => reject(new Error("could not decode a picture from the server"));
    image.src = url;
  });
}

// A heat map comes as grey levels to colour here; a guided method's map is an image, shown as it is.
function isImage(result) {
  return result.map_kind === "image";
}

// The class explained, its probability and the top classes: a click on one explains it instead.
function showPrediction(result) {
  const target = result.target;
  $("top-class").textContent = target ? `${target.label} (${(100 * target.probability).toFixed(1)}%)` : "no method applies";
  const compare = result === state.compare;
  $("details").textContent = compare
    ? `${result.model} · ${result.methods.length} methods · ${$("layer").value ? "layer " + $("layer").value : "automatic layer"}`
    : `${result.model} · ${result.method}${result.layer ? " · layer " + result.layer : ""}`;
  $("top5").replaceChildren(...result.top5.map((entry) => {
    const item = document.createElement("li");
    const current = target && entry.index === target.index;
    if (current) item.className = "current";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${entry.label} — ${(100 * entry.probability).toFixed(1)}%`;
    button.title = `explain ${entry.label} (class ${entry.index})`;
    button.setAttribute("aria-pressed", String(Boolean(current)));
    button.onclick = () => chooseClass(entry.index);
    item.append(button);
    return item;
  }));
}

async function show(result) {
  const { width, height } = result.display;
  const map = isImage(result) ? result.pictures.heatmap : result.pictures.map;
  [state.photoPixels, state.mapPixels] = await Promise.all([
    pixels(result.pictures.original, width, height), pixels(map, width, height)]);
  state.result = result;  // with the pixels it describes
  setPicture("original", result.pictures.original, "the photo");
  $("colormap").disabled = isImage(result);
  $("download").hidden = view() === "compare";
  showResults();
  recolour();
}

function dataUrl(data) {
  const canvas = document.createElement("canvas");
  canvas.width = data.width;
  canvas.height = data.height;
  canvas.getContext("2d").putImageData(data, 0, 0);
  return canvas.toDataURL("image/png");
}

// The map coloured with the lookup table (or a guided image as it is), and blended over the photo.
function colourMap(mapPixels, photoPixels, image, lut, alpha) {
  const { width, height } = mapPixels;
  const map = mapPixels.data, photo = photoPixels.data;
  const heat = new ImageData(width, height), blend = new ImageData(width, height);
  for (let i = 0; i < map.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      const colour = image ? map[i + c] : lut[map[i]][c];
      heat.data[i + c] = colour;
      blend.data[i + c] = (1 - alpha) * photo[i + c] + alpha * colour;
    }
    heat.data[i + 3] = blend.data[i + 3] = 255;
  }
  return { heat, blend };
}

// Heatmap and overlay from the map, the colormap's lookup table (heat maps only) and the opacity: no request.
function recolour() {
  const lut = state.luts[$("colormap").value];
  const alpha = Number($("alpha").value);
  if (state.mapPixels && state.result) {
    const image = isImage(state.result);
    const { heat, blend } = colourMap(state.mapPixels, state.photoPixels, image, lut, alpha);
    setPicture("heatmap", image ? state.result.pictures.heatmap : dataUrl(heat), "heatmap");
    setPicture("overlay", dataUrl(blend), "overlay");
  }
  if (state.compare && state.compareCells) {
    const images = $("grid").querySelectorAll("img.cell");
    let k = 0;
    state.compareCells.forEach(({ entry, map }) => {
      if (!map) return;
      const { blend } = colourMap(map, state.comparePhoto, isImage(entry), lut, isImage(entry) ? 1 : alpha);
      images[k++].src = dataUrl(blend);
    });
  }
  drawLegend();
}

// The colour bar under the maps: what the hot end means and the scale of the values.
function drawLegend() {
  const compare = view() === "compare", task = !compare && $("task").value !== "classification";
  const result = compare ? state.compare : state.result;
  const heat = compare ? result && result.methods.some((e) => e.status === "ok" && !isImage(e)) : result && !isImage(result);
  $("legend").hidden = task || !heat;
  if ($("legend").hidden) return;
  const lut = state.luts[$("colormap").value];
  const canvas = $("legend-bar"), context = canvas.getContext("2d");
  const bar = context.createImageData(256, 1);
  for (let i = 0; i < 256; i++) {
    bar.data.set([...lut[i], 255], 4 * i);
  }
  context.putImageData(bar, 0, 0);
  const what = result.target ? `the score of “${result.target.label}”` : "the class's score";
  const scale = $("normalize").value === "max"
    ? "each map divided by its own maximum: 0 = no evidence, 1 = the map's strongest point"
    : "each map stretched to its own range: 0 = the map's lowest value, 1 = its highest";
  const hot = ["jet", "turbo", "hot", "inferno", "magma", "plasma"].includes($("colormap").value)
    ? "Red/yellow (the right end)" : "The right end";
  $("legend-low").textContent = "0 · low";
  $("legend-high").textContent = "1 · high";
  const guided = compare && result.methods.some((e) => e.status === "ok" && isImage(e));
  $("legend-text").textContent = `${hot}: where the model found most evidence for ${what}; ${scale}.` +
    (guided ? " The guided methods' images are not on this scale." : "");
}

// The overlay at the photo's own size, drawn by the server with the colormap and opacity chosen here.
async function download() {
  const result = state.result;
  const query = new URLSearchParams({ colormap: $("colormap").value, alpha: $("alpha").value });
  setStatus("Preparing the full-size overlay…", "busy");
  try {
    const response = await fetch(`${result.downloads.overlay}?${query}`);
    if (!response.ok) throw new Error(await reason(response));
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `${(state.file.name || "image").replace(/\.[^.]+$/, "")}_overlay.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    setStatus(`Saved ${link.download} (${result.image.width}×${result.image.height}).`);
  } catch (error) {
    setStatus(`Could not download the overlay: ${error.message}`, "error");
  }
}

// A new photo: the URL's class for the first one, else its prediction.
function choose(file) {
  if (!file) return;
  state.file = file;
  state.result = state.compare = state.task = null;
  state.chosenClass = state.pendingClass;
  state.pendingClass = null;
  if (state.chosenClass !== null && !/^\d+$/.test(state.chosenClass)) {
    const found = classByName(state.chosenClass);
    state.chosenClass = found.error ? null : found.index;
    if (found.error) setStatus(found.error, "error");
  } else if (state.chosenClass !== null) {
    state.chosenClass = Number(state.chosenClass);
  }
  rerun();
}

$("file").addEventListener("change", (event) => choose(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  choose(event.dataTransfer.files[0]);
});
document.querySelectorAll('input[name="view"]').forEach((radio) => radio.addEventListener("change", () => {
  showView();
  rerun();  // the other view may hold an older photo's or setting's result
}));
$("model").addEventListener("change", async () => { await loadModel(); state.chosenClass = null; rerun(); });
// The class being explained is kept when the method, precision, scale or layer changes.
$("method").addEventListener("change", rerun);
$("precision").addEventListener("change", rerun);
$("normalize").addEventListener("change", rerun);
$("layer").addEventListener("change", () => { followLayer(); rerun(); });
$("stage").addEventListener("input", () => showStage());
$("stage").addEventListener("change", chooseStage);
$("alpha").addEventListener("input", () => { recolour(); syncURL(); });
$("task").addEventListener("change", () => { showTaskOptions(); state.chosenClass = null; rerun(); });
$("min-score").addEventListener("change", () => explain());
$("reference").addEventListener("change", () => explain());
$("negative").addEventListener("change", () => explain());
$("task-result").addEventListener("click", (event) => {
  if (event.target.id === "task-picture") chooseObject(boxAt(event));
});
$("download").addEventListener("click", download);
$("colormap").addEventListener("change", () => { recolour(); syncURL(); });
// A class by name: the exact name first ("Cardigan" the corgi, "cardigan" the sweater), else the one
// class whose name matches with case ignored; several such classes are listed, not guessed.
function classByName(text) {
  const exact = state.labels.indexOf(text);
  if (exact >= 0) return { index: exact };
  const folded = state.labels.flatMap((label, i) => (label.toLowerCase() === text.toLowerCase() ? [i] : []));
  if (folded.length === 1) return { index: folded[0] };
  if (folded.length > 1) {
    return { error: `"${text}" matches ${folded.map((i) => `"${state.labels[i]}" (${i})`).join(" and ")}: type the exact name.` };
  }
  return { error: `No class named "${text}".` };
}

$("class-search").addEventListener("change", (event) => {
  const text = event.target.value.trim();
  if (!text) return chooseClass(null);
  const found = classByName(text);
  if (found.error) setStatus(found.error, "error");
  else chooseClass(found.index);
});

init();
