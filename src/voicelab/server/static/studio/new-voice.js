// voicelab studio, New voice: name a voice, give recordings (uploads or links), start a job that runs
// voicelab-voice on the server, and follow it (server-sent events). Plain JS, nothing fetched from elsewhere.
"use strict";

const KEY_STORAGE = "voicelab-studio-key"; // shared with the studio's main page
const LOG_LINES_KEPT = 400;
const RECONNECT_MS = 2000;
const JOB_LIST_REFRESH_MS = 3000;
const NAME_RULE = /^[A-Za-z0-9_-]{1,64}$/;
const STEP_ORDER = ["fetch", "prepare-audio", "transcribe", "review", "train-lora", "evaluate", "reload"];
const STEP_LABELS = {
  fetch: "Gather recordings",
  "prepare-audio": "Cut into clips",
  transcribe: "Transcribe",
  review: "Review",
  "train-lora": "Train",
  evaluate: "Evaluate",
  reload: "Serve",
};
const STATUS_TEXT = {
  uploading: "not started",
  queued: "queued",
  running: "running",
  cancelling: "stopping",
  paused: "waiting for your review",
  done: "done",
  cancelled: "cancelled",
  failed: "failed",
  interrupted: "interrupted",
};
const ACTIVE = new Set(["queued", "running", "cancelling"]);
const RESUMABLE = new Set(["paused", "cancelled", "failed", "interrupted"]);

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  info: null,
  options: null,
  job: null,
  steps: [],
  log: [],
  stream: null,
  cursor: {}, // where the job's events and log were read up to: a reconnect goes on from there
  listTimer: null,
};
// What the page has seen; the browser tests read it.
window.voicelabNewVoice = { events: 0, progress: [] };

// ------------------------------------------------------------------------------------------- API

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
  return headers;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiFailure(0, `the server did not answer (${e.message}); is it still running?`);
  }
  if (!response.ok) throw new ApiFailure(response.status, await errorText(response.status, await response.text()));
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

function postJson(path, body = {}) {
  return apiJson(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function errorText(status, text) {
  let message = `${status}`;
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) message = `${status}: ${body.error.message}`;
  } catch (_) {
    /* not JSON: the status alone */
  }
  if (status === 401) {
    message += state.key ? " — check the API key" : " — enter the API key above";
    $("key-form").hidden = false;
  }
  return message;
}

function showError(e) {
  if (e && e.name === "AbortError") return;
  const box = $("error");
  box.textContent = e instanceof Error ? e.message : String(e);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function formatBytes(n) {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${Math.max(1, Math.round(n / 1024))} KiB`;
}

function formatSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// --------------------------------------------------------------------------------------- uploads

/** PUT one file as the request body (streamed by the browser); XHR for the upload progress. */
function uploadFile(jobId, kind, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `/studio/api/uploads/${jobId}/${kind}/${encodeURIComponent(file.name)}`);
    if (state.key) xhr.setRequestHeader("Authorization", `Bearer ${state.key}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = async () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiFailure(xhr.status, `${file.name}: ${await errorText(xhr.status, xhr.responseText)}`));
    };
    xhr.onerror = () => reject(new ApiFailure(0, `${file.name}: the upload broke off (is the server still running?)`));
    xhr.send(file);
  });
}

// -------------------------------------------------------------------------------------- settings

function title(flag) {
  const words = flag.replace(/^--/, "").replaceAll("-", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function defaultText(option) {
  const values = [...new Set(Object.values(option.defaults).map((v) => JSON.stringify(v)))];
  if (values.length > 1) return "each step's own default";
  const value = JSON.parse(values[0] ?? "null");
  if (value === null || value === false || (Array.isArray(value) && !value.length)) return "not set";
  return `default ${Array.isArray(value) ? value.join(" ") : value}`;
}

function settingField(option, serverDefault) {
  const wrap = document.createElement("div");
  wrap.className = "setting";
  const id = `opt-${option.flag.slice(2)}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  const code = document.createElement("code");
  code.textContent = option.flag;
  label.append(`${title(option.flag)} `, code);
  let input;
  if (option.kind === "switch") {
    input = document.createElement("input");
    input.type = "checkbox";
  } else if (option.choices) {
    input = document.createElement("select");
    const none = document.createElement("option");
    none.value = "";
    none.textContent = `(${defaultText(option)})`;
    input.append(none);
    for (const choice of option.choices) {
      const item = document.createElement("option");
      item.value = item.textContent = choice;
      input.append(item);
    }
  } else {
    input = document.createElement("input");
    input.type = "text";
    input.spellcheck = false;
    input.placeholder = defaultText(option);
  }
  input.id = id;
  input.dataset.flag = option.flag;
  input.dataset.kind = option.kind;
  if (serverDefault !== undefined && option.kind !== "switch") input.value = serverDefault;
  const help = document.createElement("p");
  help.className = "help";
  help.id = `${id}-help`;
  help.textContent = option.help;
  input.setAttribute("aria-describedby", help.id);
  const steps = document.createElement("span");
  steps.className = "steps-of";
  steps.textContent = `for ${option.steps.join(", ")}${serverDefault !== undefined ? " · this server's value" : ""}`;
  wrap.append(label, input, steps, help);
  return wrap;
}

function renderSettings() {
  const { options, common, server_defaults: serverDefaults } = state.options;
  const commonBox = $("common-settings");
  const allBox = $("all-settings");
  commonBox.replaceChildren();
  allBox.replaceChildren();
  const byFlag = Object.fromEntries(options.map((o) => [o.flag, o]));
  for (const flag of common) commonBox.append(settingField(byFlag[flag], serverDefaults[flag]));
  for (const option of options) {
    if (!common.includes(option.flag)) allBox.append(settingField(option, serverDefaults[option.flag]));
  }
  const accept = state.options.audio_suffixes.join(",");
  $("recordings").accept = accept;
  $("reference").accept = accept;
  $("recordings-help").textContent =
    `Up to ${formatBytes(state.options.max_upload_bytes)} per file; ${state.options.audio_suffixes.join(" ")}.`;
}

function chosenSettings() {
  const chosen = {};
  for (const input of document.querySelectorAll("[data-flag]")) {
    const { flag, kind } = input.dataset;
    if (kind === "switch") {
      if (input.checked) chosen[flag] = true;
    } else if (input.value.trim()) {
      chosen[flag] = kind === "values" ? input.value.trim().split(/\s+/) : input.value.trim();
    }
  }
  return chosen;
}

function renderFileList() {
  const list = $("file-list");
  list.replaceChildren();
  for (const file of $("recordings").files) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = file.name;
    const size = document.createElement("span");
    size.textContent = formatBytes(file.size);
    if (state.options && file.size > state.options.max_upload_bytes) {
      item.className = "bad";
      size.textContent += " — over the upload limit";
    }
    item.append(name, size);
    list.append(item);
  }
}

// ----------------------------------------------------------------------------------- a new voice

function checkForm() {
  const name = $("voice-name").value.trim();
  if (!NAME_RULE.test(name)) {
    $("voice-name").focus();
    throw new Error("Name: use 1-64 letters, digits, '_' or '-'.");
  }
  const files = [...$("recordings").files];
  const urls = $("urls").value.split("\n").map((u) => u.trim()).filter(Boolean);
  if (!files.length && !urls.length) throw new Error("Add recordings: audio files, links, or both.");
  const bad = urls.find((u) => !/^https?:\/\//i.test(u));
  if (bad) throw new Error(`${bad}: only http:// and https:// links can be fetched.`);
  const limit = state.options.max_upload_bytes;
  const reference = $("reference").files[0];
  const big = [...files, ...(reference ? [reference] : [])].find((f) => f.size > limit);
  if (big) throw new Error(`${big.name} is ${formatBytes(big.size)}: over the upload limit of ${formatBytes(limit)}.`);
  return { name, files, urls, reference };
}

async function startNewVoice(event) {
  event.preventDefault();
  clearError();
  let form;
  try {
    form = checkForm();
  } catch (e) {
    showError(e);
    return;
  }
  const status = $("form-status");
  $("start").disabled = true;
  let job = null;
  try {
    status.textContent = "Checking the settings…";
    job = await postJson("/studio/api/jobs", {
      name: form.name,
      urls: form.urls,
      settings: chosenSettings(),
      review: $("review").checked,
    });
    for (const [i, file] of form.files.entries()) {
      await uploadFile(job.id, "recordings", file, (share) => {
        status.textContent = `Uploading ${file.name} (${i + 1} of ${form.files.length}): ${Math.round(share * 100)}%`;
      });
    }
    if (form.reference) {
      await uploadFile(job.id, "reference", form.reference, (share) => {
        status.textContent = `Uploading the reference clip: ${Math.round(share * 100)}%`;
      });
    }
    job = await postJson(`/studio/api/jobs/${job.id}/start`);
    status.textContent = "";
    $("new-form").reset();
    renderFileList();
    location.hash = `job=${job.id}`;
  } catch (e) {
    status.textContent = "";
    if (job) await postJson(`/studio/api/jobs/${job.id}/cancel`).catch(() => {}); // nothing half-made stays
    showError(e);
  } finally {
    $("start").disabled = false;
  }
}

// ------------------------------------------------------------------------------------- job list

async function loadJobList() {
  const body = await apiJson("/studio/api/jobs");
  const list = $("job-list");
  list.replaceChildren();
  for (const job of body.jobs.slice().reverse()) {
    const item = document.createElement("li");
    item.dataset.job = job.id;
    const link = document.createElement("a");
    link.href = `#job=${job.id}`;
    link.textContent = job.name;
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = STATUS_TEXT[job.status] || job.status;
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = queueText(job) || new Date(job.created_at).toLocaleString();
    item.append(link, badge, note);
    list.append(item);
  }
  $("jobs-status").textContent = body.jobs.length ? "" : "No jobs yet.";
}

function queueText(job) {
  if (job.status !== "queued") return "";
  const place = job.queue_position === 1 ? "next in the queue" : `number ${job.queue_position} in the queue`;
  return job.waits_for ? `${place}: waits for “${job.waits_for}” to finish (one job trains at a time)` : place;
}

// ------------------------------------------------------------------------------------- one job

function resetSteps(order = STEP_ORDER) {
  state.steps = order.map((step) => ({ step, status: "waiting", note: "", progress: null }));
}

function stepOf(name) {
  return state.steps.find((s) => s.step === name);
}

function applyEvent(kind, data) {
  window.voicelabNewVoice.events += 1;
  if (kind === "job") {
    state.job = { ...state.job, ...data };
  } else if (kind === "plan") {
    const known = Object.fromEntries(state.steps.map((s) => [s.step, s]));
    state.steps = data.steps.map((step) => known[step] || { step, status: "waiting", note: "", progress: null });
  } else if (kind === "step") {
    const step = stepOf(data.step);
    if (!step) return;
    if (data.status === "started") Object.assign(step, { status: "running", progress: null });
    else if (data.status === "skipped" && step.doneNote !== undefined) Object.assign(step, { status: "done", note: step.doneNote });
    else Object.assign(step, { status: data.status, note: data.message || "" });
    if (data.status === "done") step.doneNote = data.message || ""; // a later run's "skipped" means this
  } else if (kind === "progress") {
    const step = stepOf(data.step);
    if (step) step.progress = data;
    window.voicelabNewVoice.progress.push({ step: data.step, phase: data.phase, done: data.done, total: data.total });
  } else if (kind === "end") {
    for (const step of state.steps) if (step.status === "running") step.status = data.status;
  } else if (kind === "log") {
    state.log = [...state.log, ...data.lines].slice(-LOG_LINES_KEPT);
    renderLog();
    return;
  } else if (kind === "cursor") {
    state.cursor = data;
    return;
  } else if (kind === "gone") {
    showError(new Error("This job was deleted."));
  }
  renderJob();
}

function progressText(p) {
  const plural = p.unit === "min" || (p.total ?? p.done) === 1 ? p.unit : `${p.unit}s`;
  const amount = p.unit === "B"
    ? `${formatBytes(p.done)}${p.total ? ` of ${formatBytes(p.total)}` : ""}`
    : `${+p.done.toFixed(2)}${p.total !== null ? ` of ${+p.total.toFixed(2)}` : ""} ${plural}`;
  const parts = [`${STEP_LABELS[p.step] || p.step}: ${p.phase ? `${p.phase} — ` : ""}${amount}`];
  if (p.eta !== null && p.eta !== undefined && p.done !== p.total) parts.push(`about ${formatSeconds(p.eta)} left`);
  if (p.message) parts.push(p.message);
  return parts.join(" · ");
}

function renderJob() {
  const job = state.job;
  if (!job) return;
  $("job-title").textContent = `Voice “${job.name}”`;
  const badge = $("job-state");
  badge.className = `badge ${job.status}`;
  badge.textContent = STATUS_TEXT[job.status] || job.status;
  $("job-message").textContent = queueText(job) || job.message || "";
  const list = $("job-steps");
  list.replaceChildren();
  for (const step of state.steps) {
    const item = document.createElement("li");
    item.className = step.status;
    item.dataset.step = step.step;
    item.dataset.status = step.status;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = STEP_LABELS[step.step] || step.step;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = step.status;
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = step.status === "running" && step.progress ? progressText(step.progress) : step.note;
    item.append(name, status, note);
    list.append(item);
  }
  const current = state.steps.find((s) => s.status === "running" && s.progress);
  $("job-progress").hidden = !current || !ACTIVE.has(job.status);
  if (current) {
    const p = current.progress;
    const bar = $("progress-bar");
    if (p.total) {
      bar.max = p.total;
      bar.value = Math.min(p.done, p.total);
    } else bar.removeAttribute("value");
    $("progress-text").textContent = progressText(p);
  }
  $("job-cancel").hidden = !ACTIVE.has(job.status);
  $("job-cancel").disabled = job.status === "cancelling";
  $("job-resume").hidden = !RESUMABLE.has(job.status);
  $("job-resume").textContent = job.status === "paused" ? "Continue to training" : "Resume";
  $("job-delete").hidden = ACTIVE.has(job.status);
  const review = $("job-review");
  review.hidden = !["paused", "done", "failed", "cancelled", "interrupted"].includes(job.status);
  review.href = `/#dataset=${encodeURIComponent(job.name)}`;
  const voice = $("job-voice");
  voice.hidden = job.status !== "done";
  voice.href = `/#voice=${encodeURIComponent(job.name)}`;
}

function renderLog() {
  const pre = $("job-log");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.textContent = state.log.join("\n");
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

async function readEvents(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) applyEvent(kind, JSON.parse(data.join("\n")));
    }
  }
}

/** Follow the job's events while it runs: each stream goes on from the last cursor (streams are short, and
 * a server restart breaks them); once the job has stopped, the last stream ends and so does this. */
async function followJob(id) {
  const controller = new AbortController();
  state.stream = controller;
  state.cursor = {};
  resetSteps();
  state.log = [];
  try {
    await followStreams(id, controller);
  } finally {
    if (state.stream === controller) state.stream = null;
  }
}

async function followStreams(id, controller) {
  while (!controller.signal.aborted) {
    const query = new URLSearchParams({ events_from: state.cursor.events_from ?? 0 });
    if (state.cursor.log_from !== undefined) query.set("log_from", state.cursor.log_from);
    try {
      const response = await api(`/studio/api/jobs/${id}/events?${query}`, {
        signal: controller.signal,
        headers: { Accept: "text/event-stream" },
      });
      await readEvents(response, controller.signal);
      if (state.job && !ACTIVE.has(state.job.status)) return;
      continue;
    } catch (e) {
      if (e.name === "AbortError") return;
      if (e.status === 404 || e.status === 401 || e.status === 403) {
        showError(e);
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS)); // the server is away: try again
  }
}

function stopFollowing() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

async function openJob(id) {
  stopFollowing();
  clearInterval(state.listTimer);
  $("view-new").hidden = true;
  $("view-job").hidden = false;
  const job = await apiJson(`/studio/api/jobs/${encodeURIComponent(id)}`);
  state.job = job;
  resetSteps();
  renderJob();
  followJob(job.id);
}

async function jobAction(action) {
  clearError();
  const id = state.job.id;
  if (action === "delete") {
    await api(`/studio/api/jobs/${id}`, { method: "DELETE" });
    location.hash = "";
    return;
  }
  const job = await postJson(`/studio/api/jobs/${id}/${action}`);
  if (job.deleted) {
    location.hash = "";
    return;
  }
  state.job = { ...state.job, ...job };
  renderJob();
  if (ACTIVE.has(job.status) && !state.stream) followJob(id); // a resumed job: follow it again
}

// ------------------------------------------------------------------------------------------ start

function showList() {
  stopFollowing();
  $("view-job").hidden = true;
  $("view-new").hidden = false;
  loadJobList().catch(showError);
  clearInterval(state.listTimer);
  state.listTimer = setInterval(() => loadJobList().catch(() => {}), JOB_LIST_REFRESH_MS);
}

async function route() {
  const match = location.hash.match(/^#job=([0-9a-f]+)$/);
  if (match) await openJob(match[1]);
  else showList();
}

async function loadAll() {
  clearError();
  const info = state.info;
  if (!info.jobs_enabled) {
    $("jobs-off").textContent = `New voices cannot be made from this page here: ${info.jobs_reason}`;
    $("jobs-off").hidden = false;
    $("view-new").hidden = true;
    return;
  }
  state.options = await apiJson("/studio/api/jobs/options");
  renderSettings();
  await route();
}

async function start() {
  $("new-form").addEventListener("submit", startNewVoice);
  $("recordings").addEventListener("change", renderFileList);
  $("job-cancel").addEventListener("click", () => jobAction("cancel").catch(showError));
  $("job-resume").addEventListener("click", () => jobAction("start").catch(showError));
  $("job-delete").addEventListener("click", () => jobAction("delete").catch(showError));
  window.addEventListener("hashchange", () => route().catch(showError));
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    loadAll().catch(showError);
  });
  state.info = await (await fetch("/studio/info")).json();
  if (state.info.auth_required) {
    $("key-form").hidden = false;
    $("api-key").value = state.key;
    if (!state.key) {
      $("api-key").focus();
      return;
    }
  }
  await loadAll();
}

start().catch(showError);
