// restore serve: the page. Plain JavaScript, no dependencies; talks to the JSON API in restorekit/serve/app.py.
"use strict";

const $ = (id) => document.getElementById(id);
const HEADERS = { "X-Restorekit": "1" }; // every POST/DELETE carries it: cross-site requests cannot
const FINISHED = new Set(["done", "error", "cancelled"]);
const state = { picked: [], jobs: [], selected: null, zoom: "fit", position: 50, polling: false };

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...HEADERS, ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// --- models ----------------------------------------------------------------------------------------

async function loadModels(select) {
  const data = await api("/api/models");
  const menu = $("model");
  const previous = select || menu.value;
  menu.replaceChildren();
  const groups = { stored: "Stored", catalogue: "Catalogue", uploaded: "Uploaded" };
  const byGroup = { stored: [], catalogue: [], uploaded: [] };
  for (const m of data.models) byGroup[m.group].push(m);
  for (const m of data.uploaded) byGroup.uploaded.push({ ...m, status: "uploaded" });
  for (const [key, title] of Object.entries(groups)) {
    if (!byGroup[key].length) continue;
    const group = element("optgroup", { label: title });
    for (const m of byGroup[key]) {
      const status = m.status === "available" ? " — not downloaded (fetched on first use)"
        : m.status === "downloaded" ? " — downloaded" : "";
      const option = element("option", { value: m.id }, m.label + status);
      option.dataset.detail = [m.detail, m.description].filter(Boolean).join(" — ");
      group.append(option);
    }
    menu.append(group);
  }
  if (previous && [...menu.options].some((o) => o.value === previous)) menu.value = previous;
  showModelInfo();
  updateRun();
}

function showModelInfo() {
  const option = $("model").selectedOptions[0];
  $("model-info").textContent = option ? option.dataset.detail || "" : "no models yet: upload one";
}

async function uploadWeights(file) {
  const status = $("weights-status");
  status.className = "";
  status.textContent = `checking ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  try {
    const model = await api("/api/weights", { method: "POST", body: form });
    status.className = "ok";
    status.textContent = `${model.label}: ${model.detail}`;
    await loadModels(model.id);
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
  }
}

// --- picking and running ---------------------------------------------------------------------------

function pick(files) {
  for (const file of files) state.picked.push(file);
  $("picked").replaceChildren(...state.picked.map((f) => element("li", {}, f.name)));
  updateRun();
}

function updateRun() {
  $("run").disabled = !(state.picked.length && $("model").value);
}

async function run() {
  $("message").textContent = "";
  const form = new FormData();
  for (const file of state.picked) form.append("files", file, file.name);
  form.append("model", $("model").value);
  for (const id of ["tile", "precision", "outscale", "format"]) form.append(id, $(id).value);
  $("run").disabled = true;
  try {
    const data = await api("/api/jobs", { method: "POST", body: form });
    state.picked = [];
    $("picked").replaceChildren();
    if (!state.selected && data.jobs.length) state.selected = data.jobs[0].id;
    await poll();
  } catch (error) {
    $("message").textContent = error.message;
  }
  updateRun();
}

// --- jobs ------------------------------------------------------------------------------------------

function statusText(job) {
  if (job.status === "running") {
    return job.total_tiles ? `restoring: ${job.done_tiles}/${job.total_tiles} tiles` : "restoring…";
  }
  if (job.status === "done") {
    const size = job.output_size ? ` ${job.output_size[0]}×${job.output_size[1]}` : "";
    return `done${size}` + (job.notes.length ? ` (${job.notes.join("; ")})` : "");
  }
  if (job.status === "error") return job.message;
  return job.status;
}

function renderJobs() {
  const list = $("jobs");
  list.replaceChildren(...state.jobs.map((job) => {
    const progress = element("progress", { max: job.total_tiles || 1, value: job.status === "done" ? (job.total_tiles || 1) : job.done_tiles });
    const actions = element("span", { class: "actions" });
    if (!FINISHED.has(job.status)) {
      actions.append(element("button", { type: "button", class: "secondary cancel", onclick: (e) => { e.stopPropagation(); cancel(job.id); } }, "Cancel"));
    }
    if (job.status === "done") {
      actions.append(element("a", { class: "button secondary download", href: `/api/jobs/${job.id}/download`, download: job.download_name, onclick: (e) => e.stopPropagation() }, "Download"));
    }
    const row = element("li", { class: `${job.status}${job.id === state.selected ? " selected" : ""}`, "data-job": job.id, onclick: () => select(job.id) },
      element("span", {}, element("div", { class: "name", title: job.name }, job.name), element("div", { class: "status" }, statusText(job))),
      progress, actions);
    return row;
  }));
  const done = state.jobs.filter((j) => j.status === "done");
  const all = $("download-all");
  all.classList.toggle("disabled", !done.length);
  all.href = `/api/download.zip?ids=${done.map((j) => j.id).join(",")}`;
  showSelected();
}

async function poll() {
  const data = await api("/api/jobs");
  state.jobs = data.jobs;
  renderJobs();
  const busy = state.jobs.some((j) => !FINISHED.has(j.status));
  if (busy && !state.polling) {
    state.polling = true;
    setTimeout(() => { state.polling = false; poll().catch((e) => { $("message").textContent = e.message; }); }, 400);
  }
}

async function cancel(id) {
  try { await api(`/api/jobs/${id}/cancel`, { method: "POST" }); } catch (error) { $("message").textContent = error.message; }
  await poll();
}

function select(id) {
  state.selected = id;
  renderJobs();
}

// --- the before/after viewer -------------------------------------------------------------------------

function showSelected() {
  const job = state.jobs.find((j) => j.id === state.selected && j.status === "done");
  const viewer = $("viewer");
  if (!job) { viewer.hidden = true; return; }
  viewer.hidden = false;
  $("viewer-title").textContent = `${job.name} → ${job.download_name}`;
  const after = `/api/jobs/${job.id}/output`;
  if ($("after").dataset.src !== after) {
    $("after").dataset.src = after;
    $("after").src = after;
    $("before").src = `/api/jobs/${job.id}/input`;
  }
  layout(job);
}

function layout(job = state.jobs.find((j) => j.id === state.selected)) {
  if (!job || !job.output_size) return;
  const [width, height] = job.output_size;
  const box = $("compare");
  let scale = 1;
  if (state.zoom === "fit") {
    scale = Math.min((box.clientWidth - 4) / width, (box.clientHeight - 4) / height);
  }
  $("stage").style.width = `${Math.max(1, Math.round(width * scale))}px`;
  $("stage").style.height = `${Math.max(1, Math.round(height * scale))}px`;
  box.classList.toggle("fit", state.zoom === "fit");
  $("zoom-fit").setAttribute("aria-pressed", String(state.zoom === "fit"));
  $("zoom-1").setAttribute("aria-pressed", String(state.zoom === "1:1"));
}

function setPosition(percent) {
  state.position = Math.max(0, Math.min(100, percent));
  $("after").style.clipPath = `inset(0 0 0 ${state.position}%)`;
  $("handle").style.left = `${state.position}%`;
  $("handle").setAttribute("aria-valuenow", String(Math.round(state.position)));
}

function dragTo(event) {
  const box = $("stage").getBoundingClientRect();
  setPosition(((event.clientX - box.left) / box.width) * 100);
}

// --- wiring ----------------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { pick(e.target.files); e.target.value = ""; });
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => pick(e.dataTransfer.files));
  $("weights").addEventListener("change", (e) => { if (e.target.files[0]) uploadWeights(e.target.files[0]); e.target.value = ""; });
  $("model").addEventListener("change", () => { showModelInfo(); updateRun(); });
  $("run").addEventListener("click", run);
  $("zoom-fit").addEventListener("click", () => { state.zoom = "fit"; layout(); });
  $("zoom-1").addEventListener("click", () => { state.zoom = "1:1"; layout(); });
  window.addEventListener("resize", () => layout());

  const stage = $("stage");
  stage.addEventListener("pointerdown", (e) => { stage.setPointerCapture(e.pointerId); dragTo(e); });
  stage.addEventListener("pointermove", (e) => { if (stage.hasPointerCapture(e.pointerId)) dragTo(e); });
  $("handle").addEventListener("keydown", (e) => {
    const step = e.shiftKey ? 10 : 2;
    if (e.key === "ArrowLeft") setPosition(state.position - step);
    else if (e.key === "ArrowRight") setPosition(state.position + step);
    else return;
    e.preventDefault();
  });
  setPosition(50);
}

wire();
loadModels().catch((e) => { $("message").textContent = e.message; });
poll().catch((e) => { $("message").textContent = e.message; });
