// attnreid gallery search: the page's logic (no build step). The page shows either the
// gallery (no query yet) or the ranked results of the current query, a page at a time.
"use strict";
const PAGE = 12;
const state = { query: null, offset: 0, total: 0, info: null };
const $ = (id) => document.getElementById(id);

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function api(path, form, headers = {}) {
  const res = await fetch(path, form ? { method: "POST", body: form, headers } : {});
  const body = (res.headers.get("content-type") || "").includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body ?? res;
}

function filters(form) {
  const cams = [...document.querySelectorAll("#cameras input:checked")].map((c) => c.value);
  if (state.info && cams.length && cams.length < state.info.cameras.length) {
    form.append("cameras", cams.join(","));
  }
  for (const [id, key] of [["time-from", "time_from"], ["time-to", "time_to"]]) {
    if ($(id).value !== "") form.append(key, $(id).value);
  }
  return form;
}

function card(item) {
  const div = document.createElement("div");
  const verdict = item.verdict ? item.verdict.replace(" ", "-") : "";
  div.className = `card ${verdict}`;
  div.dataset.id = item.id;
  div.title = `crop ${item.id}: click to search with it`;
  const lines = [];
  if (item.rank) lines.push(`#${item.rank} · ${item.distance.toFixed(3)}`);
  lines.push(`cam ${item.camera ?? "?"}${item.time != null ? ` · t ${item.time}` : ""}`);
  if (item.pid != null) lines.push(`id ${item.pid}`);
  div.innerHTML = `<img loading="lazy" alt="crop ${item.id}">` +
    lines.map((l) => `<div>${l}</div>`).join("") +
    (item.verdict ? `<span class="badge ${verdict}">${item.verdict}</span>` : "");
  div.querySelector("img").src = item.image;
  div.addEventListener("click", () => setQuery({ crop: item }));
  return div;
}

function render(items, title) {
  $("results-title").textContent = title;
  $("results").replaceChildren(...items.map(card));
  const pages = Math.max(1, Math.ceil(state.total / PAGE));
  $("page").textContent = `page ${Math.floor(state.offset / PAGE) + 1} of ${pages} (${state.total})`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= state.total;
}

async function refresh() {
  showError("");
  try {
    if (!state.query) {
      const cams = [...document.querySelectorAll("#cameras input:checked")].map((c) => c.value);
      const one = cams.length === 1 ? `&camera=${cams[0]}` : "";
      const page = await api(`/api/crops?offset=${state.offset}&limit=${PAGE}${one}`);
      state.total = page.total;
      render(page.items, "Gallery (click a crop to search with it)");
      return;
    }
    const form = filters(new FormData());
    if (state.query.crop) form.append("crop_id", state.query.crop.id);
    else form.append("image", state.query.file);
    form.append("top", PAGE);
    form.append("offset", state.offset);
    const res = await api("/api/search", form);
    state.total = res.total;
    render(res.results, `Results (${res.total} gallery crops after filters)`);
  } catch (err) {
    showError(err.message);
  }
}

function setQuery(query) {
  state.query = query;
  state.offset = 0;
  $("query-view").hidden = false;
  $("attention-img").hidden = true;
  if (query.crop) {
    $("query-img").src = query.crop.image;
    $("query-name").textContent = `gallery crop ${query.crop.id} (camera ${query.crop.camera ?? "?"})`;
  } else {
    $("query-img").src = URL.createObjectURL(query.file);
    $("query-name").textContent = query.file.name;
  }
  refresh();
}

async function showAttention() {
  const form = new FormData();
  if (state.query.crop) form.append("crop_id", state.query.crop.id);
  else form.append("image", state.query.file);
  try {
    const res = await api("/api/attention", form);
    $("attention-img").src = URL.createObjectURL(await res.blob());
    $("attention-img").hidden = false;
  } catch (err) {
    showError(err.message);
  }
}

async function addCrop(event) {
  event.preventDefault();
  const file = $("add-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  for (const [id, key] of [["add-camera", "camera"], ["add-time", "time"], ["add-pid", "pid"]]) {
    if ($(id).value !== "") form.append(key, $(id).value);
  }
  const token = $("add-token").value;
  if (token) sessionStorage.setItem("attnreid-token", token);  // this tab only
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const item = await api("/api/crops", form, auth);
    $("add-status").textContent = `added as crop ${item.id}`;
    await loadInfo();
    refresh();
  } catch (err) {
    $("add-status").textContent = "";
    showError(err.message);
  }
}

async function loadInfo() {
  const info = await api("/api/info");
  const first = !state.info;
  state.info = info;
  const cams = info.cameras.length;
  $("info").textContent = `${info.size} crops · ${cams} camera${cams === 1 ? "" : "s"} · model ` +
    `${info.model ?? "?"} · ${info.metric} distance`;
  $("verdicts").textContent = `Verdicts: ${info.verdicts}`;
  $("attention-btn").hidden = !info.attention;
  $("add-form").hidden = !info.writable;  // a read-only server takes no crops
  $("token-label").hidden = !info.token;
  if (info.token && !$("add-token").value) $("add-token").value = sessionStorage.getItem("attnreid-token") || "";
  const box = $("cameras");
  const known = new Set([...box.querySelectorAll("input")].map((c) => c.value));
  for (const cam of info.cameras) {
    if (known.has(String(cam))) continue;
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${cam}" checked> ${cam}`;
    box.append(label);
  }
  if (first && info.time_range) {
    $("time-from").placeholder = info.time_range[0];
    $("time-to").placeholder = info.time_range[1];
  }
}

function wire() {
  const drop = $("drop");
  $("query-file").addEventListener("change", (e) => e.target.files[0] && setQuery({ file: e.target.files[0] }));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) setQuery({ file: e.dataTransfer.files[0] });
  });
  $("apply").addEventListener("click", () => { state.offset = 0; refresh(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; refresh(); });
  $("attention-btn").addEventListener("click", showAttention);
  $("add-form").addEventListener("submit", addCrop);
}

wire();
loadInfo().then(refresh).catch((err) => showError(err.message));
