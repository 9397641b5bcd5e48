// voicelab studio: try the voices, review a prepared dataset. Plain JS, no build step, nothing fetched
// from elsewhere. Talks to /v1/* (the OpenAI-compatible API) and /studio/api/* with the same bearer key.
"use strict";

const SAMPLE_RATE = 24000; // Orpheus/SNAC output: 24 kHz mono
const BYTES_PER_SAMPLE = 2; // response_format "pcm": signed 16-bit little-endian
const INT16_SCALE = 32768;
const PLAYBACK_LEAD_S = 0.05; // first chunk starts this far ahead of "now", so it is never late
const KEY_STORAGE = "voicelab-studio-key";
const FORMAT_EXTENSIONS = { pcm: "wav", mp3: "mp3", flac: "flac", opus: "opus", aac: "aac" };

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  info: { auth_required: false, datasets_enabled: true },
  voices: [],
  speech: null, // {controller, sources, ctx}
  dataset: null, // {name, clips: [...]}
  index: -1,
  clipUrl: null,
};
// What the last Speak measured; the browser tests read it.
window.voicelabStudio = { lastSpeech: null };

// ------------------------------------------------------------------------------------------- API

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiFailure(0, `the server did not answer (${e.message}); is it still running?`);
  }
  if (!response.ok) {
    const failure = new ApiFailure(response.status, await errorText(response));
    failure.body = response.failureBody; // e.g. the clip as it is now, on an edit conflict
    throw failure;
  }
  return response;
}

async function errorText(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    response.failureBody = body;
    if (body && body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
  } catch (_) {
    /* not JSON: keep the status line */
  }
  if (response.status === 401) {
    message += state.key ? " — check the API key" : " — enter the API key above";
    $("key-form").hidden = false;
  }
  return message;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
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

async function blobUrl(path) {
  const blob = await (await api(path)).blob();
  return URL.createObjectURL(blob);
}

// ----------------------------------------------------------------------------------------- views

function showView(name) {
  for (const view of ["voices", "dataset"]) {
    $(`view-${view}`).hidden = view !== name;
    $(`tab-${view}`).setAttribute("aria-pressed", String(view === name));
  }
  if (name === "dataset" && !state.datasetsLoaded) loadDatasets().catch(showError);
}

// ---------------------------------------------------------------------------------------- voices

const VOICE_FIELDS = [
  ["prompt_prefix", "Prompt prefix"],
  ["lora_rank", "LoRA rank"],
  ["base_model", "Base model"],
  ["created_at", "Trained"],
  ["final_loss", "Final loss"],
];
const HIDDEN_FIELDS = new Set(["id", "name", "object", ...VOICE_FIELDS.map(([k]) => k)]);

function formatValue(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
  if (typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") || "—";
  }
  return String(value);
}

function addField(dl, label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = formatValue(value);
  dl.append(dt, dd);
}

function renderVoices() {
  const list = $("voice-list");
  list.replaceChildren();
  const select = $("voice-select");
  const chosen = select.value;
  select.replaceChildren();
  for (const voice of state.voices) {
    const item = document.createElement("li");
    item.className = "card";
    item.dataset.voice = voice.id;
    const title = document.createElement("h3");
    title.textContent = voice.name || voice.id;
    const dl = document.createElement("dl");
    for (const [key, label] of VOICE_FIELDS) addField(dl, label, voice[key]);
    for (const [key, value] of Object.entries(voice)) {
      if (!HIDDEN_FIELDS.has(key)) addField(dl, key.replaceAll("_", " "), value);
    }
    const use = document.createElement("button");
    use.type = "button";
    use.textContent = `Use ${voice.id}`;
    use.addEventListener("click", () => {
      select.value = voice.id;
      markSelectedVoice();
      $("speak-text").focus();
    });
    const evaluation = document.createElement("div");
    evaluation.className = "eval";
    item.append(title, dl, use, evaluation);
    list.append(item);
    const option = document.createElement("option");
    option.value = option.textContent = voice.id;
    select.append(option);
    loadEvaluation(voice.id, evaluation).catch(showError);
  }
  if (state.voices.some((v) => v.id === chosen)) select.value = chosen;
  markSelectedVoice();
  $("speak").disabled = state.voices.length === 0;
}

function markSelectedVoice() {
  for (const item of $("voice-list").children) {
    item.classList.toggle("selected", item.dataset.voice === $("voice-select").value);
  }
  markTrainedTags();
}

// The tag buttons say which tags the chosen voice was trained with (and what its evaluation found): a tag
// it never saw in training may be read aloud as a word.
function markTrainedTags() {
  const voice = state.voices.find((v) => v.id === $("voice-select").value);
  const trained = (voice && voice.training && voice.training.tags) || {};
  const checked = (voice && voice.evaluation && voice.evaluation.tags) || {};
  for (const button of $("speak-form").querySelectorAll("[data-tag]")) {
    const name = button.dataset.tag.slice(1, -1);
    const count = trained[name];
    button.classList.toggle("trained", Boolean(voice && count));
    button.classList.toggle("untrained", Boolean(voice && !count));
    const verdict = checked[name] ? ` · evaluation: ${checked[name]}` : "";
    button.title = !voice ? "" : count
      ? `trained on ${count.clips} clips (${count.occurrences}x)${verdict}`
      : `not in this voice's training data: it may read it aloud${verdict}`;
  }
  const names = Object.entries(trained).map(([t, c]) => `<${t}> ${c.clips} clips`);
  $("tag-note").textContent = !voice ? "" : names.length
    ? `${voice.id} was trained with ${names.join(", ")}; dashed tags were not in its data and may be read aloud.`
    : `${voice.id} was trained without tags: each may be read aloud (see the guide's section on tags).`;
}

async function loadEvaluation(voice, into) {
  const found = await apiJson(`/studio/api/voices/${encodeURIComponent(voice)}/eval`);
  if (!found.summary && !found.pictures.length) return;
  const details = document.createElement("details");
  details.open = true;
  const summary = document.createElement("summary");
  summary.textContent = "Evaluation";
  details.append(summary);
  if (found.summary) {
    const pre = document.createElement("pre");
    pre.textContent = found.summary;
    details.append(pre);
  }
  for (const name of found.pictures) {
    const img = document.createElement("img");
    img.alt = `Evaluation of ${voice}: ${name}`;
    img.src = await blobUrl(`/studio/api/voices/${encodeURIComponent(voice)}/eval/${encodeURIComponent(name)}`);
    details.append(img);
  }
  into.append(details);
}

async function loadVoices() {
  const body = await apiJson("/v1/audio/voices");
  state.voices = body.voices;
  renderVoices();
  $("voices-status").textContent = state.voices.length
    ? `${state.voices.length} voice(s)`
    : "No voices yet: train one with `make train-lora`, then press Reload voices.";
}

async function reloadVoices() {
  const button = $("reload-voices");
  button.disabled = true;
  try {
    const report = await apiJson("/v1/voices/reload", { method: "POST" });
    await loadVoices();
    const parts = ["added", "removed", "updated"].filter((k) => report[k] && report[k].length)
      .map((k) => `${k}: ${report[k].join(", ")}`);
    const skipped = Object.entries(report.skipped || {}).map(([n, why]) => `${n} (${why})`);
    if (skipped.length) parts.push(`skipped: ${skipped.join("; ")}`);
    $("voices-status").textContent = `Reloaded. ${parts.join(" · ") || "No changes."}`;
  } finally {
    button.disabled = false;
  }
}

function insertTag(tag, id = "speak-text") {
  const text = $(id);
  const start = text.selectionStart;
  const before = text.value.slice(0, start);
  const after = text.value.slice(text.selectionEnd);
  const spaced = (before && !/\s$/.test(before) ? " " : "") + tag + (/^\s/.test(after) ? "" : " ");
  text.setRangeText(spaced, start, text.selectionEnd, "end");
  text.focus();
}

function numberOrNull(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

function speechRequest() {
  const body = {
    voice: $("voice-select").value,
    input: $("speak-text").value,
    response_format: $("speak-format").value,
    speed: numberOrNull("speak-speed") ?? 1,
  };
  const optional = {
    temperature: "speak-temperature",
    top_p: "speak-top-p",
    repetition_penalty: "speak-repetition",
    seed: "speak-seed",
  };
  for (const [field, id] of Object.entries(optional)) {
    const value = numberOrNull(id);
    if (value !== null) body[field] = value;
  }
  return body;
}

function wavFromPcm(chunks, totalSamples) {
  const dataBytes = totalSamples * BYTES_PER_SAMPLE;
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + dataBytes, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true); // PCM fmt chunk size
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, SAMPLE_RATE, true);
  header.setUint32(28, SAMPLE_RATE * BYTES_PER_SAMPLE, true);
  header.setUint16(32, BYTES_PER_SAMPLE, true);
  header.setUint16(34, 8 * BYTES_PER_SAMPLE, true);
  text(36, "data");
  header.setUint32(40, dataBytes, true);
  return new Blob([header.buffer, ...chunks], { type: "audio/wav" });
}

function audioContext() {
  if (!state.audioContext) state.audioContext = new AudioContext();
  if (state.audioContext.state === "suspended") state.audioContext.resume().catch(() => {});
  return state.audioContext;
}

// Plays 16-bit PCM chunks back to back as they arrive.
class PcmPlayer {
  constructor(ctx) {
    this.ctx = ctx;
    this.next = 0;
    this.sources = [];
  }

  play(samples) {
    const buffer = this.ctx.createBuffer(1, samples.length, SAMPLE_RATE);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / INT16_SCALE;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const at = Math.max(this.next, this.ctx.currentTime + PLAYBACK_LEAD_S);
    source.start(at);
    this.next = at + buffer.duration;
    this.sources.push(source);
  }

  stop() {
    for (const source of this.sources) {
      try {
        source.stop();
      } catch (_) {
        /* not started yet or already ended */
      }
    }
  }
}

async function streamPcm(response, started, stats) {
  const player = new PcmPlayer(audioContext());
  state.speech.player = player;
  const reader = response.body.getReader();
  const chunks = [];
  let carry = new Uint8Array(0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const bytes = new Uint8Array(carry.length + value.length);
    bytes.set(carry);
    bytes.set(value, carry.length);
    const whole = bytes.length - (bytes.length % BYTES_PER_SAMPLE); // a sample can straddle two reads
    carry = bytes.slice(whole);
    if (!whole) continue;
    const samples = new Int16Array(bytes.slice(0, whole).buffer);
    if (stats.chunks === 0) {
      stats.firstAudioMs = performance.now() - started;
      $("speak-stats").textContent = `First audio after ${Math.round(stats.firstAudioMs)} ms…`;
    }
    stats.chunks += 1;
    stats.samples += samples.length;
    chunks.push(samples);
    player.play(samples);
  }
  return wavFromPcm(chunks, stats.samples);
}

async function speak(event) {
  event.preventDefault();
  clearError();
  stopSpeech();
  const body = speechRequest();
  const format = body.response_format;
  const controller = new AbortController();
  state.speech = { controller };
  $("speak").disabled = true;
  $("stop").disabled = false;
  $("download").hidden = true;
  $("speak-audio").hidden = true;
  $("speak-stats").textContent = "Generating…";
  const started = performance.now();
  const stats = { format, chunks: 0, samples: 0, firstAudioMs: null, totalMs: null };
  try {
    if (format === "pcm") audioContext(); // created inside the click, so the browser lets it play
    const response = await api("/v1/audio/speech", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    let blob;
    if (format === "pcm") {
      blob = await streamPcm(response, started, stats);
    } else {
      stats.firstAudioMs = performance.now() - started; // headers arrive once the first audio exists
      blob = await response.blob();
      const audio = $("speak-audio");
      audio.src = URL.createObjectURL(blob);
      audio.hidden = false;
      audio.play().catch(() => {});
    }
    stats.totalMs = performance.now() - started;
    offerDownload(blob, FORMAT_EXTENSIONS[format], body.voice);
    const seconds = stats.samples ? ` · ${(stats.samples / SAMPLE_RATE).toFixed(2)} s of audio` : "";
    $("speak-stats").textContent =
      `First audio after ${Math.round(stats.firstAudioMs)} ms · complete after ${Math.round(stats.totalMs)} ms${seconds}`;
    window.voicelabStudio.lastSpeech = stats;
  } catch (e) {
    $("speak-stats").textContent = e.name === "AbortError" ? "Stopped." : "";
    showError(e);
  } finally {
    $("speak").disabled = state.voices.length === 0;
    $("stop").disabled = true;
  }
}

function offerDownload(blob, extension, voice) {
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = `${voice}-${new Date().toISOString().replace(/[:.]/g, "-")}.${extension}`;
  link.textContent = `Download ${extension}`;
  link.hidden = false;
}

function stopSpeech() {
  if (!state.speech) return;
  state.speech.controller.abort();
  if (state.speech.player) state.speech.player.stop();
  state.speech = null;
}

// --------------------------------------------------------------------------------------- dataset

async function loadDatasets() {
  const body = await apiJson("/studio/api/datasets");
  state.datasetsLoaded = true;
  const select = $("dataset-select");
  select.replaceChildren();
  for (const d of body.datasets) {
    const option = document.createElement("option");
    option.value = d.name;
    option.textContent = `${d.name} (${d.clips} clips${d.review ? "" : ", no review yet"})`;
    select.append(option);
  }
  if (!body.datasets.length) {
    $("dataset-status").textContent = `No prepared datasets in ${body.prepared_dir}: run make prepare-audio and make transcribe.`;
    return;
  }
  await openDataset(select.value);
}

async function openDataset(name) {
  const body = await apiJson(`/studio/api/datasets/${encodeURIComponent(name)}`);
  state.dataset = body;
  state.index = -1;
  showDatasetStatus();
  showDatasetTags(body.tags);
  renderTagKeys();
  renderClipList();
  const report = $("dataset-report");
  report.hidden = !body.report;
  if (body.report) report.querySelector("img").src = await blobUrl(`/studio/api/datasets/${encodeURIComponent(name)}/report`);
  $("clip-editor").hidden = body.clips.length === 0;
  if (body.clips.length) await selectClip(0, { play: false });
}

function showDatasetStatus() {
  const clips = state.dataset.clips;
  const count = (test) => clips.filter(test).length;
  $("dataset-status").textContent =
    `${clips.length} clips · ${count((c) => c.risk !== null)} flagged by the review (listed first) · ` +
    `${count((c) => c.edited)} edited · ${count((c) => c.excluded)} excluded`;
}

// Clips and occurrences per tag in what training would use, with the guidance; the unknown ones.
function showDatasetTags(tags) {
  state.dataset.tags = tags;
  const counts = Object.entries(tags.counts).map(([t, c]) => `<${t}> ${c.clips} clips (${c.occurrences}x)`);
  const unknown = Object.entries(tags.unknown).map(([t, n]) => `${t} (${n} clips)`);
  $("dataset-tags").textContent =
    `Tags: ${counts.join(" · ") || "none yet"} — about ${tags.examples_needed} examples for a tag the model must learn` +
    (unknown.length ? `. Unknown, removed in training: ${unknown.join(", ")}` : "");
}

async function refreshDatasetTags() {
  showDatasetTags(await apiJson(`/studio/api/datasets/${encodeURIComponent(state.dataset.name)}/tags`));
}

// One button and one key (Alt+1..8) per tag; the server's list, so the keys follow its order.
function renderTagKeys() {
  const buttons = state.dataset.tags.orpheus_tags.map((name, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.clipTag = `<${name}>`;
    button.append(`<${name}>`);
    const key = document.createElement("kbd");
    key.textContent = `Alt+${i + 1}`;
    button.append(key);
    button.addEventListener("click", () => insertTag(button.dataset.clipTag, "clip-text"));
    return button;
  });
  $("clip-tags").replaceChildren(...buttons);
}

function clipItem(clip, index) {
  const item = document.createElement("li");
  item.dataset.clip = clip.filename;
  item.classList.toggle("excluded", clip.excluded);
  item.classList.toggle("edited", clip.edited);
  const button = document.createElement("button");
  button.type = "button";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = clip.filename;
  button.append(name);
  if (clip.risk !== null) {
    const risk = document.createElement("span");
    risk.className = "risk";
    risk.textContent = `risk ${clip.risk.toFixed(1)}`;
    button.append(risk);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = clip.excluded ? `excluded: ${clip.exclude_reason}` : clip.text ?? "(no text)";
  button.append(text);
  button.addEventListener("click", () => selectClip(index).catch(showError));
  item.append(button);
  if (index === state.index) item.setAttribute("aria-current", "true");
  return item;
}

function renderClipList() {
  $("clip-list").replaceChildren(...state.dataset.clips.map(clipItem));
}

function currentClip() {
  return state.dataset ? state.dataset.clips[state.index] : null;
}

async function selectClip(index, { play } = {}) {
  const clips = state.dataset.clips;
  if (index < 0 || index >= clips.length) return;
  state.index = index;
  const clip = clips[index];
  for (const item of $("clip-list").children) item.removeAttribute("aria-current");
  const item = $("clip-list").children[index];
  item.setAttribute("aria-current", "true");
  item.scrollIntoView({ block: "nearest" });
  $("clip-name").textContent = `${clip.filename} (${index + 1} of ${clips.length})`;
  $("clip-reasons").textContent = clip.reasons ? `Flagged: ${clip.reasons}` : "";
  $("clip-text").value = clip.text ?? "";
  $("exclude-reason").value = clip.excluded ? clip.exclude_reason : "";
  $("clip-exclude").textContent = clip.excluded ? "Restore" : "Exclude";
  $("clip-status").textContent = clip.excluded ? `Excluded: ${clip.exclude_reason}` : "";
  const audio = $("clip-audio");
  const url = await blobUrl(`/studio/api/datasets/${encodeURIComponent(state.dataset.name)}/clips/${encodeURIComponent(clip.filename)}`);
  if (state.index !== index) {
    URL.revokeObjectURL(url); // moved on while the clip loaded
    return;
  }
  // The old URL is released once the new clip has loaded: revoked earlier, a load still reading it fails.
  const previous = state.clipUrl;
  state.clipUrl = url;
  if (previous) {
    const listening = new AbortController();
    const release = () => {
      URL.revokeObjectURL(previous);
      listening.abort(); // removes both listeners
    };
    audio.addEventListener("loadeddata", release, { signal: listening.signal });
    audio.addEventListener("error", release, { signal: listening.signal });
  }
  audio.src = url;
  if (play ?? $("autoplay").checked) audio.play().catch(() => {});
}

// Saves only over the version this page last saw (If-Match): when someone else changed the clip since,
// the server answers 409 with the clip as it is now; the list shows that, and the text box keeps the edit.
async function putClip(clip, change) {
  const headers = { "Content-Type": "application/json" };
  if (clip.etag) headers["If-Match"] = clip.etag;
  const url = `/studio/api/datasets/${encodeURIComponent(state.dataset.name)}/clips/${encodeURIComponent(clip.filename)}`;
  try {
    showClip(clip, await apiJson(url, { method: "PUT", headers, body: JSON.stringify(change) }));
  } catch (e) {
    if (e.status === 409 && e.body && e.body.current) {
      showClip(clip, e.body.current);
      const now = `${clip.text ?? "(no text)"}${clip.excluded ? ", excluded" : ""}`;
      e.message = `${clip.filename} was changed by someone else meanwhile (now: ${now}). ` +
        "Your text is still in the box: save again to replace theirs.";
    }
    throw e;
  }
  return clip;
}

function showClip(clip, updated) {
  Object.assign(clip, updated);
  const index = state.dataset.clips.indexOf(clip);
  $("clip-list").children[index].replaceWith(clipItem(clip, index));
  showDatasetStatus();
}

// Saves the text box when it differs from the saved text; true when nothing was left unsaved.
async function saveText() {
  const clip = currentClip();
  if (!clip) return true;
  const text = $("clip-text").value;
  if (text.trim() === (clip.text ?? "").trim()) return true;
  try {
    await putClip(clip, { text });
    $("clip-text").value = clip.text;
    const removed = clip.removed_tags.map((t) => `${t} removed: the base model would read it aloud; map it to an Orpheus tag or leave it out`);
    $("clip-status").textContent = [`Saved ${clip.filename}.`, ...removed].join(" ");
    clearError();
    await refreshDatasetTags();
    return true;
  } catch (e) {
    showError(e);
    return false;
  }
}

async function toggleExclude() {
  const clip = currentClip();
  if (!clip) return;
  const excluding = !clip.excluded;
  try {
    await putClip(clip, { excluded: excluding, reason: $("exclude-reason").value });
  } finally {
    $("clip-exclude").textContent = clip.excluded ? "Restore" : "Exclude";
  }
  $("exclude-reason").value = clip.excluded ? clip.exclude_reason : "";
  $("clip-status").textContent = clip.excluded ? `Excluded ${clip.filename}: ${clip.exclude_reason}` : `Restored ${clip.filename}.`;
}

async function move(step) {
  if (!(await saveText())) return;
  const next = state.index + step;
  if (next < 0 || next >= state.dataset.clips.length) {
    const saved = $("clip-status").textContent;
    $("clip-status").textContent = `${saved} ${next < 0 ? "This is the first clip." : "That was the last clip."}`.trim();
    return;
  }
  await selectClip(next);
}

function togglePlay() {
  const audio = $("clip-audio");
  if (audio.paused) audio.play().catch(() => {});
  else audio.pause();
}

function focusCurrentItem() {
  const item = $("clip-list").children[state.index];
  if (item) item.querySelector("button").focus();
}

const LIST_KEYS = {
  j: () => move(1),
  ArrowDown: () => move(1),
  k: () => move(-1),
  ArrowUp: () => move(-1),
  p: togglePlay,
  " ": togglePlay,
  e: () => $("clip-text").focus(),
  Enter: () => $("clip-text").focus(),
  x: toggleExclude,
};

function onDatasetKey(event) {
  if ($("view-dataset").hidden || !currentClip()) return;
  const run = (action) => {
    event.preventDefault();
    Promise.resolve(action()).catch(showError);
  };
  if ((event.ctrlKey || event.metaKey) && event.key === "s") return run(saveText);
  const tagKey = /^Digit([1-9])$/.exec(event.code);
  const tags = state.dataset.tags ? state.dataset.tags.orpheus_tags : [];
  if (event.altKey && tagKey && Number(tagKey[1]) <= tags.length) {
    return run(() => insertTag(`<${tags[Number(tagKey[1]) - 1]}>`, "clip-text")); // the clip keeps playing
  }
  const target = event.target;
  if (target === $("clip-text")) {
    if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey) return run(() => move(1));
    if (event.altKey && event.key === "ArrowDown") return run(() => move(1));
    if (event.altKey && event.key === "ArrowUp") return run(() => move(-1));
    if (event.altKey && event.code === "KeyP") return run(togglePlay);
    if (event.key === "Escape") {
      return run(() => {
        $("clip-text").value = currentClip().text ?? "";
        focusCurrentItem();
      });
    }
    return;
  }
  if (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || event.ctrlKey || event.altKey || event.metaKey) return;
  const action = LIST_KEYS[event.key];
  if (action) run(action);
}

// ------------------------------------------------------------------------------------------ start

async function loadAll() {
  clearError();
  await loadVoices();
  if (!$("view-dataset").hidden) await loadDatasets();
}

async function start() {
  $("tab-voices").addEventListener("click", () => showView("voices"));
  $("tab-dataset").addEventListener("click", () => showView("dataset"));
  $("reload-voices").addEventListener("click", () => reloadVoices().catch(showError));
  $("voice-select").addEventListener("change", markSelectedVoice);
  for (const button of document.querySelectorAll("[data-tag]")) {
    button.addEventListener("click", () => insertTag(button.dataset.tag));
  }
  $("speak-form").addEventListener("submit", speak);
  $("stop").addEventListener("click", stopSpeech);
  $("dataset-select").addEventListener("change", (e) => openDataset(e.target.value).catch(showError));
  $("clip-prev").addEventListener("click", () => move(-1).catch(showError));
  $("clip-next").addEventListener("click", () => move(1).catch(showError));
  $("clip-play").addEventListener("click", togglePlay);
  $("clip-save").addEventListener("click", () => saveText());
  $("clip-exclude").addEventListener("click", () => toggleExclude().catch(showError));
  document.addEventListener("keydown", onDatasetKey);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    state.datasetsLoaded = false;
    loadAll().catch(showError);
  });

  state.info = await (await fetch("/studio/info")).json();
  $("tab-dataset").hidden = !state.info.datasets_enabled;
  const defaults = { temperature: "speak-temperature", top_p: "speak-top-p", repetition_penalty: "speak-repetition" };
  for (const [field, id] of Object.entries(defaults)) $(id).placeholder = `${state.info.sampling[field]} (default)`;
  if (state.info.auth_required) {
    $("key-form").hidden = false;
    $("api-key").value = state.key;
    if (!state.key) {
      $("voices-status").textContent = "This server needs an API key: enter it above.";
      $("api-key").focus();
      return;
    }
  }
  await loadAll();
}

start().catch(showError);
