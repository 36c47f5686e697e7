// The gradcam page: upload, explain over the HTTP API, recolour and blend in the browser.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, result: null, luts: {}, labels: [], mapPixels: null, photoPixels: null };

function setStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = kind;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
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
    state.luts = colormaps.luts;
    await loadModel();
  } catch (error) {
    setStatus(`Could not load the server's options: ${error.message}`, "error");
  }
}

async function explain(target = null) {
  if (!state.file) return;
  const form = new FormData();
  form.append("image", state.file);
  form.append("model", $("model").value);
  form.append("method", $("method").value);
  if ($("layer").value) form.append("layer", $("layer").value);
  if (target !== null) form.append("target", String(target));
  form.append("colormap", $("colormap").value);
  form.append("alpha", $("alpha").value);
  setStatus(`Explaining with ${$("method").value}…`, "busy");
  try {
    const response = await fetch("/api/explain", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    state.result = body;
    await show(body);
    const t = body.timings_ms;
    setStatus(`Done in ${t.total} ms (model ${t.explain} ms).`);
  } catch (error) {
    setStatus(`Error: ${error.message}`, "error");
  }
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

async function show(result) {
  const { width, height } = result.image;
  [state.photoPixels, state.mapPixels] = await Promise.all([
    pixels(result.pictures.original, width, height), pixels(result.pictures.map, width, height)]);
  $("original").src = result.pictures.original;
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

// Heatmap and overlay from the grey map, the colormap's lookup table and the opacity: no request.
async function recolour() {
  if (!state.mapPixels) return;
  const { width, height } = state.mapPixels;
  const lut = state.luts[$("colormap").value];
  const alpha = Number($("alpha").value);
  const map = state.mapPixels.data, photo = state.photoPixels.data;
  const heat = new ImageData(width, height), blend = new ImageData(width, height);
  for (let i = 0; i < map.length; i += 4) {
    const colour = lut[map[i]];
    for (let c = 0; c < 3; c++) {
      heat.data[i + c] = colour[c];
      blend.data[i + c] = (1 - alpha) * photo[i + c] + alpha * colour[c];
    }
    heat.data[i + 3] = blend.data[i + 3] = 255;
  }
  const [heatUrl, blendUrl] = await Promise.all([heat, blend].map(async (data) => {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").putImageData(data, 0, 0);
    return canvas.toDataURL("image/png");
  }));
  $("heatmap").src = heatUrl;
  $("overlay").src = blendUrl;
  const link = $("download");
  link.href = blendUrl;
  link.download = `${(state.file.name || "image").replace(/\.[^.]+$/, "")}_overlay.png`;
  link.hidden = false;
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
$("method").addEventListener("change", () => explain(state.result ? state.result.target.index : null));
$("layer").addEventListener("change", () => explain(state.result ? state.result.target.index : null));
$("alpha").addEventListener("input", recolour);
$("colormap").addEventListener("change", recolour);
$("class-search").addEventListener("change", (event) => {
  const index = state.labels.findIndex((label) => label.toLowerCase() === event.target.value.trim().toLowerCase());
  if (index >= 0) explain(index);
  else setStatus(`No class named "${event.target.value}".`, "error");
});

init();
