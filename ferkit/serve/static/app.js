// ferkit web page: send a photo (or webcam frames) to /v1/predict, draw a box and the five
// landmarks per face on the canvas and a bar per emotion. Plain JS, no build step, nothing loaded from other hosts.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
// The palette of the annotated images (ferkit/inference/annotate.py CLASS_COLORS; a test keeps them equal).
const COLORS = {
  angry: "#e63946", disgust: "#6a994e", fear: "#9b5de5", happy: "#ffbe0b",
  sad: "#3a86ff", surprise: "#fb8500", neutral: "#adb5bd",
};
const WEBCAM_INTERVAL_MS = 250; // at most 4 requests a second, one in flight at a time
const WEBCAM_MAX_WIDTH = 640; // frames are downscaled before upload

const el = {
  file: document.getElementById("file"),
  drop: document.getElementById("drop"),
  webcam: document.getElementById("webcam"),
  fps: document.getElementById("fps"),
  status: document.getElementById("status"),
  canvas: document.getElementById("canvas"),
  video: document.getElementById("video"),
  results: document.getElementById("results"),
  model: document.getElementById("model"),
  figures: document.getElementById("model-figures"),
  template: document.getElementById("face-template"),
  key: document.getElementById("key"),
  explain: document.getElementById("explain"),
  prior: document.getElementById("prior"),
  keyRow: document.getElementById("key-row"),
};
const ctx = el.canvas.getContext("2d");
let webcam = null; // {stream, timer} while the webcam runs

function setStatus(text, isError = false) {
  el.status.textContent = text;
  el.status.classList.toggle("error", isError);
}

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
}

// ------------------------------------------------------------------ talking to the API

// A service started with an API key answers 401 to the API: then the page shows a key field and
// sends what is typed there (kept for this tab only) as X-API-Key.
const KEY_STORE = "ferkit-api-key";
el.key.value = sessionStorage.getItem(KEY_STORE) || "";
el.key.addEventListener("change", () => {
  sessionStorage.setItem(KEY_STORE, el.key.value);
  showModelInfo();
});

function api(path, options = {}) {
  const headers = el.key.value ? { "X-API-Key": el.key.value } : {};
  return fetch(path, { ...options, headers }).then((response) => {
    if (response.status === 401) el.keyRow.hidden = false;
    return response;
  });
}

async function predict(blob) {
  const body = new FormData();
  body.append("file", blob, blob.name || "image");
  const params = new URLSearchParams();
  if (el.explain.checked) params.set("explain", "true");
  if (el.prior.value) params.set("prior", el.prior.value);
  const query = params.toString() ? `?${params}` : "";
  const response = await api(`/v1/predict${query}`, { method: "POST", body });
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = { detail: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) {
    const detail = typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return payload;
}

async function showModelInfo() {
  try {
    const response = await api("/v1/models");
    if (response.status === 401) {
      el.model.textContent = "this service asks for an API key";
      return;
    }
    const info = await response.json();
    const served = info.models.find((m) => m.name === info.served);
    el.model.textContent = `model: ${info.served}` + (served && served.purpose ? `: ${served.purpose}` : "");
    if (served) showFigures(served);
  } catch (_) {
    el.model.textContent = "model info unavailable";
  }
}

// The served model's headline figures from its card, as the service formats them (`shown`).
function showFigures(model) {
  const shown = model.shown || {};
  const items = [
    ["ferplus", "FER+ PrivateTest", "accuracy / macro-F1, majority labels"],
    ["expw", "ExpW-dev web photos", "end to end: accuracy / macro-F1, a missed face counts as wrong"],
    ["fer2013", "FER2013 PrivateTest", "accuracy, FER2013's own labels"],
    ["params", "parameters", ""],
    ["speed", "crops/s", model.speed_on || ""],
  ];
  el.figures.replaceChildren(...items.map(([key, name, title]) => {
    const item = document.createElement("span");
    item.dataset.figure = key;
    item.title = title;
    const value = document.createElement("strong");
    value.textContent = shown[key] ?? "–";
    item.append(`${name} `, value);
    return item;
  }));
  const prior = model.prior ? `${model.prior} prior; ` : "";
  el.figures.title = `${prior}${model.labels} labels; figures from the model card`;
  el.figures.hidden = false;
}

// ------------------------------------------------------------------ drawing

function drawImage(source, width, height) {
  el.canvas.width = width;
  el.canvas.height = height;
  ctx.drawImage(source, 0, 0, width, height);
}

// What each label relied on (?explain=true): the face's occlusion map, a grid over its 48x48
// aligned crop, drawn through the crop-to-image affine so that it lies on the face as cropped.
function heatColor(v) {
  // blue -> cyan -> yellow -> red, like the CLI's overlays
  const t = Math.max(0, Math.min(1, v));
  const r = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3))));
  const g = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2))));
  const b = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1))));
  return [r, g, b];
}

function drawHeatmaps(faces) {
  let drawn = 0;
  for (const face of faces) {
    const ex = face.explanation;
    if (!ex) continue;
    const side = ex.heatmap.length;
    const grid = document.createElement("canvas");
    grid.width = side;
    grid.height = side;
    const gctx = grid.getContext("2d");
    const pixels = gctx.createImageData(side, side);
    ex.heatmap.forEach((row, y) => row.forEach((value, x) => {
      const level = value / ex.full_scale;
      const [r, g, b] = heatColor(level);
      pixels.data.set([r, g, b, Math.round(255 * 0.6 * Math.min(1, level))], 4 * (y * side + x));
    }));
    gctx.putImageData(pixels, 0, 0);
    const [[a, c, e], [b, d, f]] = ex.crop_to_image;
    ctx.save();
    ctx.setTransform(a, b, c, d, e, f);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(grid, -0.5, -0.5, ex.crop_size, ex.crop_size);
    ctx.restore();
    drawn += 1;
  }
  el.canvas.dataset.heatmaps = String(drawn);
}

function drawBoxes(faces) {
  drawHeatmaps(faces);
  const line = Math.max(2, Math.round(el.canvas.width / 250));
  const fontSize = Math.max(12, Math.round(el.canvas.width / 40));
  ctx.font = `600 ${fontSize}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  let drawn = 0;
  let dots = 0;
  faces.forEach((face, i) => {
    if (!face.box) return;
    const { x, y, w, h } = face.box;
    const color = COLORS[face.label] || "#ffffff";
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const tag = `${i + 1}. ${face.label} ${percent(face.score)}`;
    const tagWidth = ctx.measureText(tag).width + 8;
    const tagTop = y - fontSize - 6 >= 0 ? y - fontSize - 6 : y + h;
    ctx.fillStyle = color;
    ctx.fillRect(x - line / 2, tagTop, tagWidth, fontSize + 6);
    ctx.fillStyle = "#000000"; // dark on the light palette, as in the annotated images
    ctx.fillText(tag, x + 4 - line / 2, tagTop + fontSize + 4);
    dots += drawLandmarks(face.landmarks, color, line);
    drawn += 1;
  });
  el.canvas.dataset.boxes = String(drawn);
  el.canvas.dataset.landmarks = String(dots);
}

// The detector's five points (eyes, nose tip, mouth corners), if it gave them: small dots
// in the face's colour, ringed in black so that they show on any skin.
function drawLandmarks(landmarks, color, line) {
  if (!landmarks) return 0;
  const radius = Math.max(2, line);
  let count = 0;
  for (const [px, py] of Object.values(landmarks)) {
    ctx.beginPath();
    ctx.arc(px, py, radius, 0, 2 * Math.PI);
    ctx.fillStyle = color;
    ctx.fill();
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#000000";
    ctx.stroke();
    count += 1;
  }
  return count;
}

// ------------------------------------------------------------------ result cards

function renderBars(list, probabilities, top) {
  list.replaceChildren();
  for (const emotion of EMOTIONS) {
    const p = probabilities[emotion] ?? 0;
    const item = document.createElement("li");
    item.dataset.emotion = emotion;
    item.classList.toggle("top", emotion === top);
    const name = document.createElement("span");
    name.textContent = emotion;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    fill.style.background = COLORS[emotion];
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = percent(p);
    item.append(name, track, pct);
    list.append(item);
  }
}

function renderFace(face, index) {
  const card = el.template.content.firstElementChild.cloneNode(true);
  card.dataset.index = String(index);
  card.dataset.label = face.label;
  card.dataset.score = String(face.score);
  if (face.box) card.dataset.box = `${face.box.x},${face.box.y},${face.box.w},${face.box.h}`;
  card.querySelector(".swatch").style.background = COLORS[face.label];
  card.querySelector(".title").textContent = `Face ${index + 1}:`;
  card.querySelector(".label").textContent = face.label;
  card.querySelector(".score").textContent = percent(face.score);
  card.dataset.uncertain = String(Boolean(face.uncertain));
  if (face.uncertain) {
    const flag = document.createElement("span");
    flag.className = "uncertain";
    flag.textContent = " uncertain";
    flag.title = "the top probability is under the model's threshold: wrong at least half the time";
    card.querySelector(".score").after(flag);
  }
  renderBars(card.querySelector(".bars"), face.probabilities, face.label);
  return card;
}

function renderResults(result) {
  const faces = result.faces || [];
  el.results.dataset.faces = String(faces.length);
  el.results.dataset.topLabel = faces.length ? faces[0].label : "";
  if (!faces.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = result.note || "No face found.";
    el.results.replaceChildren(empty);
  } else {
    el.results.replaceChildren(...faces.map(renderFace));
  }
  el.results.dataset.state = "done";
}

// ------------------------------------------------------------------ photo

let latestUpload = 0; // only the newest upload may draw: a slow earlier answer must not
let lastFile = null; // the photo shown, asked again when the explanation toggle changes

async function handleFile(file) {
  if (!file) return;
  lastFile = file;
  const upload = ++latestUpload;
  stopWebcam();
  el.results.dataset.state = "busy";
  setStatus(`Recognising ${file.name}…`);
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(file); // applies EXIF orientation, like the server
  } catch (_) {
    bitmap = null; // the server will say why it is not an image
  }
  try {
    const result = await predict(file);
    if (upload !== latestUpload) return;
    if (bitmap) {
      drawImage(bitmap, bitmap.width, bitmap.height);
    } else {
      // The browser cannot show this format (TIFF, PGM...): no photo, so no stale one either.
      ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
    }
    drawBoxes(result.faces || []);
    renderResults(result);
    const n = (result.faces || []).length;
    setStatus(n ? `${n} face${n > 1 ? "s" : ""} in ${file.name}.` : `No face found in ${file.name}.`);
  } catch (err) {
    if (upload !== latestUpload) return;
    el.results.dataset.state = "error";
    setStatus(err.message, true);
  }
}

el.file.addEventListener("change", () => handleFile(el.file.files[0]));
for (const control of [el.explain, el.prior]) {
  control.addEventListener("change", () => {
    if (lastFile && !webcam) handleFile(lastFile);
  });
}
el.drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  el.drop.classList.add("over");
});
el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
el.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  el.drop.classList.remove("over");
  handleFile(event.dataTransfer.files[0]);
});

// ------------------------------------------------------------------ webcam

function frameToBlob(frame) {
  return new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.85));
}

async function webcamTick() {
  if (!webcam) return;
  const started = performance.now();
  const { videoWidth: vw, videoHeight: vh } = el.video;
  if (vw && vh) {
    const scale = Math.min(1, WEBCAM_MAX_WIDTH / vw);
    const frame = document.createElement("canvas");
    frame.width = Math.round(vw * scale);
    frame.height = Math.round(vh * scale);
    frame.getContext("2d").drawImage(el.video, 0, 0, frame.width, frame.height);
    try {
      const result = await predict(await frameToBlob(frame));
      if (!webcam) return;
      drawImage(frame, frame.width, frame.height); // the frame that was analysed, so boxes line up
      drawBoxes(result.faces || []);
      renderResults(result);
      el.fps.textContent = `${Math.round(performance.now() - started)} ms per frame`;
      setStatus("Webcam: live predictions.");
    } catch (err) {
      setStatus(err.message, true);
    }
  }
  if (webcam) {
    const wait = Math.max(0, WEBCAM_INTERVAL_MS - (performance.now() - started));
    webcam.timer = setTimeout(webcamTick, wait);
  }
}

async function startWebcam() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("This browser cannot open a webcam here (it needs https or localhost).", true);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640 }, audio: false });
    webcam = { stream, timer: null };
    el.video.srcObject = stream;
    await el.video.play();
    el.webcam.textContent = "Stop webcam";
    el.webcam.classList.add("active");
    setStatus("Webcam started…");
    webcamTick();
  } catch (err) {
    webcam = null;
    setStatus(`Cannot start the webcam: ${err.message}`, true);
  }
}

function stopWebcam() {
  if (!webcam) return;
  clearTimeout(webcam.timer);
  webcam.stream.getTracks().forEach((track) => track.stop());
  webcam = null;
  el.video.srcObject = null;
  el.webcam.textContent = "Start webcam";
  el.webcam.classList.remove("active");
  el.fps.textContent = "";
  setStatus("Webcam stopped.");
}

el.webcam.addEventListener("click", () => (webcam ? stopWebcam() : startWebcam()));
showModelInfo();
