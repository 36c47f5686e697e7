// The gradcam page: upload, explain over the HTTP API, recolour and blend in the browser, download
// the full-size overlay from the server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, result: null, luts: {}, labels: [], mapPixels: null, photoPixels: null };

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

async function loadModel() {
  const model = $("model").value;
  const [layers, labels] = await Promise.all([
    getJSON(`/api/layers?model=${encodeURIComponent(model)}`),
    getJSON(`/api/labels?model=${encodeURIComponent(model)}`),
  ]);
  fill($("layer"), [["", `automatic (${layers.automatic})`],
    ...layers.layers.map((l) => [l.name, `${l.name}  ${l.shape.join("×")}${l.name === layers.automatic ? "  ← automatic" : ""}`])], "");
  state.labels = labels.labels;
  $("labels").replaceChildren(...labels.labels.map((label) => {
    const option = document.createElement("option");
    option.value = label;
    return option;
  }));
}

async function init() {
  try {
    const [models, methods, colormaps] = await Promise.all([
      getJSON("/api/models"), getJSON("/api/methods"), getJSON("/api/colormaps")]);
    fill($("model"), models.models.map((m) => [m, m]), models.default);
    fill($("method"), methods.methods.map((m) => [m.name, m.name]), methods.default);
    [...$("method").options].forEach((o, i) => { o.title = methods.methods[i].description; });
    fill($("colormap"), colormaps.colormaps.map((c) => [c, c]), "jet");
    const tasks = await getJSON("/api/tasks");
    fill($("task"), tasks.tasks.map((t) => [t, t]), tasks.default);
    showTaskOptions();
    state.luts = colormaps.luts;
    await loadModel();
  } catch (error) {
    setStatus(`Could not load the server's options: ${error.message}`, "error");
  }
}

// The options of the chosen task only.
function showTaskOptions() {
  const task = $("task").value;
  document.querySelectorAll(".task-option").forEach((label) => {
    label.hidden = !label.dataset.tasks.split(" ").includes(task);
  });
}

async function explain(target = null) {
  if (!state.file) return;
  if ($("task").value !== "classification") return explainTask(target);
  const form = new FormData();
  form.append("image", state.file);
  form.append("model", $("model").value);
  form.append("method", $("method").value);
  form.append("precision", $("precision").value);
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
    $("prediction").hidden = true;
    $("pictures").hidden = true;
    $("task-result").hidden = false;
    $("task-details").textContent = `${body.model} · ${body.method} · ${body.task} · layer ${body.layer}`;
    $("task-captions").replaceChildren(...body.captions.map((caption, k) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.textContent = caption;
      button.onclick = () => chooseObject(k);
      item.append(button);
      return item;
    }));
    const whole = body.pictures.objects || body.pictures.panels || body.pictures.overlay;
    $("task-picture").src = whole;
    $("task-hint").textContent = body.boxes ? "click a box to see its object's map" : "";
    chooseObject(0);
    setStatus(`Done in ${body.timings_ms.total} ms.`);
  } catch (error) {
    setStatus(`Error: ${error.message}`, "error");
  }
}

function chooseObject(k) {
  const body = state.task;
  if (!body || k < 0 || k >= body.overlays.length) return;
  $("task-overlay").src = body.overlays[k];
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

async function show(result) {
  $("task-result").hidden = true;
  $("pictures").hidden = false;
  const { width, height } = result.display;
  const map = isImage(result) ? result.pictures.heatmap : result.pictures.map;
  [state.photoPixels, state.mapPixels] = await Promise.all([
    pixels(result.pictures.original, width, height), pixels(map, width, height)]);
  state.result = result;  // with the pixels it describes
  $("original").src = result.pictures.original;
  $("colormap").disabled = isImage(result);
  $("download").hidden = false;
  $("prediction").hidden = false;
  $("top-class").textContent = `${result.target.label} (${(100 * result.target.probability).toFixed(1)}%)`;
  $("details").textContent = `${result.model} · ${result.method}${result.layer ? " · layer " + result.layer : ""}`;
  $("top5").replaceChildren(...result.top5.map((entry) => {
    const item = document.createElement("li");
    if (entry.index === result.target.index) item.className = "current";
    const button = document.createElement("button");
    button.textContent = `${entry.label} — ${(100 * entry.probability).toFixed(1)}%`;
    button.onclick = () => explain(entry.index);
    item.append(button);
    return item;
  }));
  recolour();
}

function dataUrl(data) {
  const canvas = document.createElement("canvas");
  canvas.width = data.width;
  canvas.height = data.height;
  canvas.getContext("2d").putImageData(data, 0, 0);
  return canvas.toDataURL("image/png");
}

// Heatmap and overlay from the map, the colormap's lookup table (heat maps only) and the opacity: no request.
function recolour() {
  if (!state.mapPixels) return;
  const image = isImage(state.result);
  const { width, height } = state.mapPixels;
  const lut = state.luts[$("colormap").value];
  const alpha = Number($("alpha").value);
  const map = state.mapPixels.data, photo = state.photoPixels.data;
  const heat = new ImageData(width, height), blend = new ImageData(width, height);
  for (let i = 0; i < map.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      const colour = image ? map[i + c] : lut[map[i]][c];
      heat.data[i + c] = colour;
      blend.data[i + c] = (1 - alpha) * photo[i + c] + alpha * colour;
    }
    heat.data[i + 3] = blend.data[i + 3] = 255;
  }
  $("heatmap").src = image ? state.result.pictures.heatmap : dataUrl(heat);
  $("overlay").src = dataUrl(blend);
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

function choose(file) {
  if (!file) return;
  state.file = file;
  explain();
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
$("model").addEventListener("change", async () => { await loadModel(); explain(); });
// The class being explained, kept when the method, precision or layer changes (classification only).
const current = () => ($("task").value === "classification" && state.result ? state.result.target.index : null);
$("method").addEventListener("change", () => explain(current()));
$("precision").addEventListener("change", () => explain(current()));
$("layer").addEventListener("change", () => explain(current()));
$("alpha").addEventListener("input", recolour);
$("task").addEventListener("change", () => { showTaskOptions(); explain(); });
$("min-score").addEventListener("change", () => explain());
$("reference").addEventListener("change", () => explain());
$("negative").addEventListener("change", () => explain());
$("task-picture").addEventListener("click", (event) => chooseObject(boxAt(event)));
$("download").addEventListener("click", download);
$("colormap").addEventListener("change", recolour);
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
  const found = classByName(event.target.value.trim());
  if (found.error) setStatus(found.error, "error");
  else explain(found.index);
});

init();
