// deepprior web app: choose an image, paint a mask, run a job, poll its status, show the result.
// Plain JavaScript, no build step.  The server's API is described in deepprior/app/server.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, file: null, jobId: null, shownPreview: -1, erasing: false, drawing: false, last: null };

// ---- set-up -------------------------------------------------------------------------------

async function init() {
  const res = await fetch("/api/config");
  state.config = await res.json();
  $("device").textContent = "device: " + state.config.device;
  $("task").addEventListener("change", onTask);
  $("preset").addEventListener("change", onPreset);
  $("file").addEventListener("change", onFile);
  $("mask-file").addEventListener("change", onMaskFile);
  $("brush").addEventListener("input", () => ($("brush-size").textContent = $("brush").value));
  $("paint").addEventListener("click", () => setErasing(false));
  $("erase").addEventListener("click", () => setErasing(true));
  $("clear").addEventListener("click", clearMask);
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  const canvas = $("mask");
  canvas.addEventListener("pointerdown", penDown);
  canvas.addEventListener("pointermove", penMove);
  canvas.addEventListener("pointerup", penUp);
  canvas.addEventListener("pointercancel", penUp);
  onTask();
}

function taskAndScale() {
  const v = $("task").value;
  return v.startsWith("sr") ? { task: "sr", scale: Number(v.slice(2)), key: v } : { task: v, scale: null, key: v };
}

function onTask() {
  const { task, key } = taskAndScale();
  const select = $("preset");
  select.innerHTML = "";
  const auto = (state.config.auto || {})[key];  // the server picks by the image (e.g. its noise level)
  if (auto) select.add(new Option("auto", "", false, true));
  for (const p of state.config.presets.filter((p) => p.task === task)) {
    select.add(new Option(p.name, p.name, false, !auto && p.name === state.config.defaults[key]));
  }
  $("mask-tools").hidden = task !== "inpaint";
  $("sigma-row").hidden = task !== "denoise";
  onPreset();
}

function currentPreset() {
  return state.config.presets.find((p) => p.name === $("preset").value);
}

function onPreset() {
  const p = currentPreset();
  if (!p) {  // "auto"
    $("preset-info").textContent = state.config.auto[taskAndScale().key];
    $("iters").placeholder = $("lr").placeholder = "preset's";
    return;
  }
  $("preset-info").textContent = `${p.description} (${p.iters} steps)`;
  $("iters").placeholder = p.iters;
  $("lr").placeholder = p.lr;
}

function message(text) {
  $("message").textContent = text || "";
}

// ---- the input image and the mask editor ----------------------------------------------------

function onFile() {
  const file = $("file").files[0];
  if (!file) return;
  message("");
  if (file.size > state.config.max_upload_bytes) {
    message(`The file is ${mb(file.size)}; the limit is ${mb(state.config.max_upload_bytes)}.`);
    return;
  }
  state.file = file;
  const img = $("input-img");
  img.onload = () => showEditor(img);
  img.onerror = () => {
    $("editor").hidden = true;
    $("editor-hint").textContent =
      "The browser cannot show this file; the server will check it when you press Restore.";
  };
  img.src = URL.createObjectURL(file);
  $("start").disabled = false;
}

function showEditor(img) {
  const w = img.naturalWidth, h = img.naturalHeight;
  if (w * h > state.config.max_pixels) {
    const limit = (state.config.max_pixels / 1e6).toFixed(1);
    message(`The image is ${w}x${h}; the limit is ${limit} megapixels: crop or downscale it first.`);
  }
  const zoom = Math.min(480 / w, 480 / h, 8);  // small images are shown enlarged, to paint on
  const canvas = $("mask");
  canvas.width = w;
  canvas.height = h;
  $("editor").style.width = `${Math.round(w * zoom)}px`;
  $("editor").classList.toggle("pixelated", zoom > 1);
  $("editor").hidden = false;
  $("editor-hint").textContent = `${w}x${h} pixels.`;
}

function setErasing(on) {
  state.erasing = on;
  $("paint").classList.toggle("active", !on);
  $("erase").classList.toggle("active", on);
}

function clearMask() {
  const c = $("mask");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

function canvasPoint(e) {
  const c = $("mask"), r = c.getBoundingClientRect();
  return { x: (e.clientX - r.left) * c.width / r.width, y: (e.clientY - r.top) * c.height / r.height };
}

function stroke(from, to) {
  const c = $("mask"), ctx = c.getContext("2d");
  ctx.globalCompositeOperation = state.erasing ? "destination-out" : "source-over";
  ctx.strokeStyle = "rgb(255, 0, 0)";
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = Number($("brush").value) * c.width / c.getBoundingClientRect().width;  // brush in screen pixels
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x + 0.01, to.y);  // a zero-length line draws nothing
  ctx.stroke();
}

function penDown(e) {
  state.drawing = true;
  $("mask").setPointerCapture(e.pointerId);
  state.last = canvasPoint(e);
  stroke(state.last, state.last);
}

function penMove(e) {
  if (!state.drawing) return;
  const p = canvasPoint(e);
  stroke(state.last, p);
  state.last = p;
}

function penUp() {
  state.drawing = false;
}

function onMaskFile() {
  // an uploaded mask (white = remove) becomes paint on the canvas, so that it can be edited
  const file = $("mask-file").files[0], c = $("mask");
  if (!file) return;
  const img = new Image();
  img.onload = () => {
    if (img.naturalWidth !== c.width || img.naturalHeight !== c.height) {
      message(`The mask is ${img.naturalWidth}x${img.naturalHeight} but the image is ${c.width}x${c.height}.`);
      return;
    }
    const ctx = c.getContext("2d");
    ctx.globalCompositeOperation = "source-over";
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, c.width, c.height), px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const on = (px[i] + px[i + 1] + px[i + 2]) / 3 * px[i + 3] / 255 >= 128;
      px.set(on ? [255, 0, 0, 255] : [0, 0, 0, 0], i);
    }
    ctx.putImageData(data, 0, 0);
    message("");
  };
  img.onerror = () => message("The mask file is not an image.");
  img.src = URL.createObjectURL(file);
}

function maskIsEmpty() {
  const c = $("mask"), px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < px.length; i += 4) if (px[i]) return false;
  return true;
}

// ---- jobs -----------------------------------------------------------------------------------

function readDataURL(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function start() {
  const { task, scale } = taskAndScale();
  if (!state.file) return message("Choose an image first.");
  if (task === "inpaint" && ($("editor").hidden || maskIsEmpty())) return message("Paint over what to remove first.");
  message("");
  const body = {
    task, scale, preset: $("preset").value, filename: state.file.name,
    iters: $("iters").value || null, seed: $("seed").value || null, lr: $("lr").value || null,
    preview_every: $("every").value || null,
    sigma: task === "denoise" ? $("sigma").value || null : null,
    image: await readDataURL(state.file),
    mask: task === "inpaint" ? $("mask").toDataURL("image/png") : null,
  };
  const res = await fetch("/api/jobs", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const job = await res.json();
  if (!res.ok) return message(job.error);
  state.jobId = job.id;
  state.shownPreview = -1;
  $("result").hidden = true;
  $("preview-current").removeAttribute("src");
  $("preview-average").removeAttribute("src");
  $("start").disabled = true;
  $("stop").disabled = false;
  poll();
}

async function stop() {
  if (!state.jobId) return;
  $("stop").disabled = true;
  await fetch(`/api/jobs/${state.jobId}/stop`, { method: "POST" });
}

async function poll() {
  const id = state.jobId;
  const res = await fetch(`/api/jobs/${id}`);
  const job = await res.json();
  if (id !== state.jobId) return;
  if (!res.ok) {
    message(job.error);
    return finish();
  }
  showStatus(job);
  showPreviews(job);
  drawCurve(job.curve);
  if (job.state === "done") showResult(job);
  if (["done", "failed", "cancelled"].includes(job.state)) return finish();
  setTimeout(poll, 300);
}

function finish() {
  $("start").disabled = false;
  $("stop").disabled = true;
}

function showStatus(job) {
  const t = `${job.elapsed.toFixed(1)} s`;
  const psnr = job.psnr === null ? "" : ` · fit ${job.psnr.toFixed(2)} dB`;
  const text = {
    queued: `Queued: ${job.ahead} job${job.ahead === 1 ? "" : "s"} ahead of yours.`,
    running: `${job.stop_requested ? "Stopping" : "Running"}: step ${job.step} / ${job.iters} · ${t}${psnr}`,
    done: `${job.stopped ? "Stopped" : "Done"}: ${job.step} steps in ${t}${psnr}`,
    failed: `Failed: ${job.error}`,
    cancelled: "Cancelled before it started.",
  }[job.state];
  $("status").textContent = `${text} (${job.preset})`;
  if (job.state === "failed") message(job.error);
}

function showPreviews(job) {
  if (job.preview_version === state.shownPreview) return;
  state.shownPreview = job.preview_version;
  const base = `/api/jobs/${job.id}/preview/`;
  const cur = $("preview-current");
  cur.onload = () => ($("live").dataset.updates = Number($("live").dataset.updates) + 1);
  cur.src = `${base}current.png?v=${job.preview_version}`;
  const hasAverage = job.previews.includes("average");
  $("preview-average").hidden = !hasAverage;
  $("average-caption").textContent = hasAverage ? "averaged output" : "(this preset does not average)";
  if (hasAverage) $("preview-average").src = `${base}average.png?v=${job.preview_version}`;
}

function drawCurve(curve) {
  // PSNR of the fit to the input (dB) against the step: the loss on a log scale
  const c = $("curve"), ctx = c.getContext("2d"), pad = 30;
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.fillText("fit to the input, PSNR (dB) = -10 log10(loss)", pad, 12);
  const pts = curve.step.map((s, i) => [s, curve.psnr[i]]).filter((p) => p[1] !== null);
  if (pts.length < 2) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys) + 1e-6;
  const X = (x) => pad + (x - x0) / (x1 - x0) * (c.width - pad - 8);
  const Y = (y) => c.height - 18 - (y - y0) / (y1 - y0) * (c.height - 38);
  ctx.fillText(y1.toFixed(1), 0, Y(y1) + 4);
  ctx.fillText(y0.toFixed(1), 0, Y(y0) + 4);
  ctx.fillText(`step ${x1}`, c.width - 60, c.height - 4);
  ctx.strokeStyle = "#1565c0";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
  ctx.stroke();
}

function showResult(job) {
  const r = job.result;
  $("result-input").src = $("input-img").src;
  $("result-img").src = `${r.image}?v=${job.id}`;
  $("result-caption").textContent = `result, ${r.width}x${r.height}${job.stopped ? " (stopped early)" : ""}`;
  $("download-image").href = r.image;
  $("download-image").download = `${r.filename}.png`;
  $("download-sidecar").href = r.sidecar;
  $("download-sidecar").download = `${r.filename}.json`;
  $("result").hidden = false;
}

function mb(n) {
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

init();
