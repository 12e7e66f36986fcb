// cqtrestore's page: upload a file, pick the task, follow the job, compare before and after.
// Plain JavaScript, no build step; talks to the JSON API of cqtrestore/serve.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, file: null, upload: null, gaps: [], job: null, poll: null, drag: null, active: null };

// ------------------------------------------------------------------ helpers

function showError(message) {
  $("error").textContent = message ? `error: ${message}` : "";
  $("error").hidden = !message;
}

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(r).padStart(2, "0")}`;
}

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ------------------------------------------------------------------ the file

function uploadFile(file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const bar = $("upload-bar");
    xhr.open("POST", "/api/uploads");
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) bar.value = event.loaded / event.total; };
    xhr.onload = () => {
      bar.hidden = true;
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new Error(data.error || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => { bar.hidden = true; reject(new Error("upload failed: the server did not answer")); };
    bar.value = 0;
    bar.hidden = false;
    xhr.send(file);
  });
}

async function chooseFile(file) {
  showError("");
  const limit = state.config.max_bytes;
  if (file.size > limit) {
    showError(`${file.name}: larger than this server's ${limit / 1e6} MB limit (--max-mb)`);
    return;
  }
  $("settings").hidden = true;
  $("file-info").hidden = true;
  $("result").hidden = true;
  state.file = file;
  state.gaps = [];
  try {
    state.upload = await uploadFile(file);
  } catch (error) {
    state.file = state.upload = null;
    showError(error.message);
    return;
  }
  const u = state.upload;
  $("file-desc").textContent =
    `${u.name}: ${clock(u.duration)} (${u.duration.toFixed(2)} s), ${u.sample_rate} Hz, ` +
    `${u.channels} channel${u.channels > 1 ? "s" : ""}, ${u.format}`;
  $("file-info").hidden = false;
  $("settings").hidden = false;
  drawWave();
  showGaps();
}

// ------------------------------------------------------------------ waveform and gaps

function drawWave() {
  const canvas = $("wave"), g = canvas.getContext("2d");
  const peaks = state.upload ? state.upload.waveform : [];
  const w = canvas.width, h = canvas.height, mid = h / 2;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#b48ee0";
  peaks.forEach(([lo, hi], i) => {
    const x = (i / peaks.length) * w, top = mid - Math.min(1, hi) * mid, bottom = mid - Math.max(-1, lo) * mid;
    g.fillRect(x, top, Math.max(1, w / peaks.length), Math.max(1, bottom - top));
  });
  const marks = state.drag ? [...state.gaps, orderedDrag()] : state.gaps;
  for (const [a, b] of marks) {
    const x0 = (a / state.upload.duration) * w, x1 = (b / state.upload.duration) * w;
    g.fillStyle = "rgba(0, 200, 255, 0.35)";
    g.fillRect(x0, 0, x1 - x0, h);
    g.fillStyle = "rgb(0, 200, 255)";
    g.fillRect(x0, 0, 1, h);
    g.fillRect(x1 - 1, 0, 1, h);
  }
}

function timeAt(event) {
  const box = $("wave").getBoundingClientRect();
  const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  return fraction * state.upload.duration;
}

function orderedDrag() {
  const [a, b] = state.drag;
  return [Math.min(a, b), Math.max(a, b)];
}

function showGaps() {
  $("gap-list").textContent = state.gaps.length
    ? state.gaps.map(([a, b]) => `${a.toFixed(3)}–${b.toFixed(3)} s`).join(", ")
    : "none yet";
}

function setUpWave() {
  const canvas = $("wave");
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.upload || !["inpaint", "composite"].includes(task())) return;
    canvas.setPointerCapture(event.pointerId);
    const t = timeAt(event);
    state.drag = [t, t];
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.drag) return;
    state.drag[1] = timeAt(event);
    drawWave();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!state.drag) return;
    state.drag[1] = timeAt(event);
    const [a, b] = orderedDrag();
    state.drag = null;
    if ((b - a) / state.upload.duration < 0.002) {  // a click: remove the range under it
      state.gaps = state.gaps.filter(([s, e]) => !(s <= a && a <= e));
    } else {
      state.gaps = mergeGaps([...state.gaps, [a, b]]);
      document.querySelector('input[name="gap-source"][value="marked"]').checked = true;
    }
    drawWave();
    showGaps();
  });
}

function mergeGaps(gaps) {
  const sorted = gaps.map(([a, b]) => [a, b]).sort((x, y) => x[0] - y[0]);
  const merged = [];
  for (const gap of sorted) {
    const last = merged[merged.length - 1];
    if (last && gap[0] <= last[1]) last[1] = Math.max(last[1], gap[1]);
    else merged.push(gap);
  }
  return merged;
}

// ------------------------------------------------------------------ settings and the job

function task() {
  return document.querySelector('input[name="task"]:checked').value;
}

function showTaskOptions() {
  const chosen = task();
  document.querySelectorAll("[data-task]").forEach((element) => {
    element.hidden = !element.dataset.task.split(" ").includes(chosen);
  });
}

function gapTexts() {
  if (document.querySelector('input[name="gap-source"]:checked').value === "auto") return ["auto"];
  return state.gaps.map(([a, b]) => `${a.toFixed(4)}:${b.toFixed(4)}`);
}

function jobRequest() {
  const chosen = task();
  const request = { upload: state.upload.upload, task: chosen, quality: $("quality").value };
  if ($("steps").value) request.steps = Number($("steps").value);
  if ($("seed").value) request.seed = Number($("seed").value);
  if (chosen === "bwe") request.cutoff = $("cutoff").value;
  if (chosen === "declip") request.threshold = $("threshold").value;
  if (chosen === "inpaint") request.gaps = gapTexts();
  if (chosen === "denoise") request.hiss = $("noise").value;
  if (chosen === "composite") {
    if ($("use-lowpass").checked) request.cutoff = $("lowpass").value;
    if ($("use-clip").checked) request.threshold = $("clip").value;
    if ($("use-hiss").checked) request.hiss = $("hiss").value;
    if ($("use-gaps").checked) request.gaps = gapTexts();
  }
  return request;
}

async function start(event) {
  event.preventDefault();
  showError("");
  $("start").disabled = true;
  try {
    let status;
    try {
      status = await api("POST", "/api/jobs", jobRequest());
    } catch (error) {
      if (error.status !== 410 || !state.file) throw error;
      state.upload = { ...state.upload, ...(await uploadFile(state.file)) };  // each upload serves one job
      status = await api("POST", "/api/jobs", jobRequest());
    }
    state.job = status.job;
    $("result").hidden = true;
    $("running").hidden = false;
    $("cancel").disabled = false;
    showStatus(status);
    if (state.poll === null && !["done", "failed", "cancelled"].includes(status.state)) {
      state.poll = setInterval(poll, 500);
    }
  } catch (error) {
    showError(error.message);
    $("start").disabled = false;
  }
}

async function poll() {
  try {
    showStatus(await api("GET", `/api/jobs/${state.job}`));
  } catch (error) {
    stopPolling();
    showError(error.message);
  }
}

function stopPolling() {
  clearInterval(state.poll);
  state.poll = null;
  $("start").disabled = false;  // one job at a time from this page
}

function showStatus(status) {
  const p = status.progress;
  const bar = $("bar");
  if (status.state === "queued") {
    bar.removeAttribute("value");
    $("status").textContent = `waiting: ${status.position} job${status.position === 1 ? "" : "s"} ahead`;
  } else if (status.state === "running") {
    if (p.total) { bar.max = p.total; bar.value = p.done; } else bar.removeAttribute("value");
    const windows = p.total ? `${p.done} of ${p.total} windows done` : "preparing";
    const eta = p.eta != null ? `, about ${clock(p.eta)} left` : "";
    $("status").textContent = `restoring: ${windows}${eta} (${clock(p.elapsed)} so far, ${p.evaluations} network evaluations)`;
  }
  if (status.state === "done") {
    stopPolling();
    $("running").hidden = true;
    if (status.result) showResult(status.result);
    else showError("this result was removed (the server keeps only the newest ones)");
  } else if (status.state === "failed" || status.state === "cancelled") {
    stopPolling();
    $("running").hidden = true;
    showError(status.state === "failed" ? status.error : "cancelled: nothing was written");
  }
}

async function cancel() {
  $("cancel").disabled = true;
  $("status").textContent = "cancelling…";
  try {
    showStatus(await api("POST", `/api/jobs/${state.job}/cancel`, {}));
  } catch (error) {
    showError(error.message);
  }
}

// ------------------------------------------------------------------ the result

function showResult(result) {
  const before = $("before"), after = $("after");
  before.pause();
  after.pause();
  before.src = result.before;
  after.src = result.after;
  state.active = before;
  $("switch").textContent = "Switch to after";
  $("spec-before").src = result.spectrogram_before;
  $("spec-after").src = result.spectrogram_after;
  $("download").href = result.download;
  $("download").setAttribute("download", result.filename);
  $("download").textContent = `Download ${result.filename}`;
  const body = $("used").tBodies[0];
  body.replaceChildren(...result.settings.map(([label, value]) => {
    const row = document.createElement("tr");
    const th = document.createElement("th"), td = document.createElement("td");
    th.textContent = label;
    td.textContent = value;
    row.append(th, td);
    return row;
  }));
  $("result").hidden = false;
}

function switchPlayers() {
  const from = state.active || $("before");
  const to = from === $("before") ? $("after") : $("before");
  const playing = !from.paused;
  from.pause();
  to.currentTime = from.currentTime;
  if (playing) to.play();
  state.active = to;
  $("switch").textContent = to === $("before") ? "Switch to after" : "Switch to before";
}

function setUpPlayers() {
  for (const [one, other] of [["before", "after"], ["after", "before"]]) {
    $(one).addEventListener("play", () => {
      $(other).pause();
      state.active = $(one);
      $("switch").textContent = one === "before" ? "Switch to after" : "Switch to before";
    });
  }
  $("switch").addEventListener("click", switchPlayers);
}

async function again() {
  if (state.job) api("DELETE", `/api/jobs/${state.job}`).catch(() => {});
  state.job = null;
  $("result").hidden = true;
  $("before").removeAttribute("src");
  $("after").removeAttribute("src");
  $("file").value = "";
  $("file").click();
}

// ------------------------------------------------------------------ start

async function init() {
  try {
    state.config = await api("GET", "/api/config");
  } catch (error) {
    showError(`the server did not answer (${error.message})`);
    return;
  }
  const c = state.config;
  $("limits").textContent =
    `WAV, FLAC, OGG, MP3 or AIFF; up to ${c.max_bytes / 1e6} MB and ${clock(c.max_seconds)} long.`;
  $("prior").textContent = `prior: ${c.checkpoint}` + (c.steps ? `, ${c.steps} sampler steps` : "") + ` · cqtrestore ${c.version}`;
  if (c.notes.length) { $("warning").textContent = c.notes.join(" "); $("warning").hidden = false; }
  $("quality").replaceChildren(...c.qualities.map((name) => new Option(name, name, name === "balanced", name === "balanced")));
  $("file").addEventListener("change", () => { if ($("file").files.length) chooseFile($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) chooseFile(event.dataTransfer.files[0]);
  });
  document.querySelectorAll('input[name="task"]').forEach((radio) => radio.addEventListener("change", showTaskOptions));
  showTaskOptions();
  setUpWave();
  setUpPlayers();
  $("settings").addEventListener("submit", start);
  $("cancel").addEventListener("click", cancel);
  $("again").addEventListener("click", again);
  document.body.dataset.ready = "true";
}

init();
