// The dashboard: agents, a launch form, the live job list and one job's log, over one
// WebSocket (see connection.js) and a few REST calls (api.js).

import { api, ApiError, hasTokenInAddress, signIn, signOut } from "./api.js";
import { Connection } from "./connection.js";
import { LogView } from "./log-view.js";
import { ChangeView } from "./change-view.js";

const $ = (selector) => document.querySelector(selector);

/// The launch fields the form has inputs for; which ones a provider takes, and the values
/// it allows, come from the server (`fields` in /api/agents/capabilities).
const FORM_FIELDS = ["model", "effort"];

/// The selected provider's fields by name, from the capabilities.
function providerFields(id) {
  const info = state.capabilities?.providers?.find((provider) => provider.id === id);
  return new Map((info?.fields ?? []).map((field) => [field.name, field]));
}

const state = {
  jobs: new Map(),
  capabilities: null,
  selected: null,
  filter: "",
  /** Jobs on the server (the snapshot's `total`), and where the next older page starts. */
  totalJobs: 0,
  olderCursor: null,
  /** job → its last `presence` (viewers, controller, you); job → connections asking this page for control. */
  presence: new Map(),
  controlAsks: new Map(),
  /** job → request → its open `job:permission` question (the agent waits for an answer). */
  questions: new Map(),
  /** Jobs this page launched and has not watched yet: it takes control of them when it does. */
  launchedHere: new Set(),
};

let connection;
let log;
/** The selected job's change, when it ran in a worktree. */
let changeView;

// MARK: formatting

function elapsed(job) {
  const start = job.startedAt ?? job.createdAt;
  if (!start) return "";
  const end = job.endedAt ?? (isActive(job) ? Date.now() : start);
  const seconds = Math.max(0, Math.round((end - start) / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

function cost(job) {
  const value = job.result?.costUsd;
  return typeof value === "number" ? `$${value.toFixed(value < 1 ? 4 : 2)}` : "";
}

function exitText(job) {
  if (job.exitCode !== null && job.exitCode !== undefined) return String(job.exitCode);
  if (job.signal) return job.signalName ?? `signal ${job.signal}`;
  return "";
}

/** A job that can be killed: running, or on its way to it (queued, its worktree being made). */
function isKillable(job) {
  return job.status === "running" || job.status === "starting" || job.status === "preparing" || job.status === "queued";
}

/** "budget 600 s · 3 of 20 turns · $0.41 of $2": a job's limits with what it spent so far. */
function budgetText(job) {
  const budget = job.budget;
  if (!budget) return "";
  const turns = job.turns ?? job.result?.numTurns;
  const spent = job.costUsd ?? job.result?.costUsd;
  const parts = [];
  if (budget.timeoutSeconds) parts.push(`${budget.timeoutSeconds} s`);
  if (budget.maxTurns) parts.push(`${turns ?? 0} of ${budget.maxTurns} turns`);
  if (budget.maxBudgetUsd) parts.push(`$${(spent ?? 0).toFixed(2)} of $${budget.maxBudgetUsd}`);
  return parts.length ? `budget ${parts.join(" · ")}` : "";
}

/** "1st", "2nd", "3rd", "11th": a place in the queue. */
function ordinal(number) {
  const tens = number % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" })[number % 10] ?? "th";
  return `${number}${suffix}`;
}

/** "queued (3rd)": a queued job's status with its place. */
function statusText(job) {
  return job.status === "queued" && job.queuePosition ? `queued (${ordinal(job.queuePosition)})` : job.status;
}

/** A job that is still running (or being stopped), so it has a Kill button and a clock. */
function isActive(job) {
  return isKillable(job) || job.status === "stopping";
}

/** "14:05:09" today, "Dec 3 14:05" before: when the job was launched. */
function startTime(job) {
  const at = new Date(job.startedAt ?? job.createdAt);
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : at.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** The prompt's first line, for the job list. */
function promptLine(job) {
  const first = (job.prompt ?? "").trim().split("\n")[0];
  return first.length > 120 ? `${first.slice(0, 120)}…` : first;
}

function statusBadge(status, text = status, title = "") {
  const badge = document.createElement("span");
  badge.className = `status status-${status}`;
  badge.textContent = text;
  if (title) badge.title = title;
  return badge;
}

// MARK: agents

function renderAgents() {
  const list = $("#agents");
  const providers = state.capabilities?.providers ?? [];
  list.replaceChildren(...providers.map((info) => {
    const item = document.createElement("li");
    item.className = info.available ? "agent available" : "agent missing";
    const name = document.createElement("strong");
    name.textContent = info.name;
    const detail = document.createElement("span");
    detail.className = "meta";
    const broken = info.id.endsWith("-acp") && info.acp === false ? "found, but it has no ACP mode" : "found, but --version failed";
    detail.textContent = info.available ? (info.version ?? "") : info.path ? broken : "not found";
    item.append(name, " ", detail);
    if (info.acp) {
      const acp = document.createElement("span");
      acp.className = "tag";
      acp.textContent = "ACP";
      acp.title = "supports the Agent Client Protocol";
      item.append(" ", acp);
    }
    if (info.path) item.title = info.path;
    return item;
  }));
  const select = $("#launch-provider");
  const previous = select.value;
  select.replaceChildren(...providers.map((info) => {
    const option = document.createElement("option");
    option.value = info.id;
    option.textContent = info.available ? info.name : `${info.name} (not installed)`;
    option.disabled = !info.available;
    return option;
  }));
  // The operator's profiles, when it has any: a profile chooses the provider and its fields.
  const profiles = state.capabilities?.profiles ?? [];
  const profileSelect = $("#launch-profile");
  const chosen = profileSelect.value;
  profileSelect.replaceChildren(new Option("none", ""), ...profiles.map((profile) => {
    const option = new Option(profile.name, profile.name);
    option.title = [profile.provider, profile.description].filter(Boolean).join(": ");
    return option;
  }));
  profileSelect.value = profiles.some((profile) => profile.name === chosen) ? chosen : "";
  $("#launch-profile-field").hidden = profiles.length === 0;
  const firstAvailable = providers.find((info) => info.available)?.id;
  select.value = providers.some((info) => info.id === previous && info.available) ? previous : firstAvailable ?? "";
  updateProviderFields();
}

async function refreshAgents() {
  const button = $("#refresh-agents");
  button.disabled = true;
  button.textContent = "Refreshing…";
  try {
    state.capabilities = await api.refreshCapabilities();
    renderAgents();
  } catch (error) {
    showFormError(`Could not refresh: ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = "Refresh";
  }
}

function updateProviderFields() {
  // With a profile, its provider and fields are the operator's: only the open fields show.
  const profile = $("#launch-profile").value;
  $("#launch-provider-field").hidden = Boolean(profile);
  const fields = profile ? new Map() : providerFields($("#launch-provider").value);
  for (const element of document.querySelectorAll("[data-for]")) {
    element.hidden = !fields.has(element.dataset.for);
  }
  // Effort levels differ per agent (claude low…high, codex none…xhigh, opencode minimal…max).
  const effort = fields.get("effort");
  const select = $("#launch-effort");
  const previous = select.value;
  const values = effort?.type === "choice" ? effort.values : [];
  select.replaceChildren(new Option("default", ""), ...values.map((value) => new Option(value, value)));
  select.value = values.includes(previous) ? previous : "";
}

// MARK: launch

function clearErrors() {
  for (const element of document.querySelectorAll(".field-error")) element.textContent = "";
  for (const element of document.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
  showFormError("");
}

function showFormError(message) {
  $("#launch-error").textContent = message;
}

async function launch(event) {
  event.preventDefault();
  clearErrors();
  const form = new FormData($("#launch"));
  const profile = String(form.get("profile") ?? "");
  const provider = String(form.get("provider") ?? "");
  const request = profile ? { profile, prompt: String(form.get("prompt") ?? "") } : { provider, prompt: String(form.get("prompt") ?? "") };
  const fields = profile ? new Map() : providerFields(provider);
  for (const key of ["cwd", "label", "project", "key", ...FORM_FIELDS.filter((name) => fields.has(name))]) {
    const value = String(form.get(key) ?? "").trim();
    if (value) request[key] = value;
  }
  // Budgets are numbers; the server refuses one past its maximum, naming the field.
  // A field the form hides (with a profile, the profile's) is not sent.
  const budgetTaken = !profile && fields.has("maxBudgetUsd");
  const turnsTaken = !profile && fields.has("maxTurns");
  for (const key of ["timeoutSeconds", "priority", ...(budgetTaken ? ["maxBudgetUsd"] : []), ...(turnsTaken ? ["maxTurns"] : [])]) {
    const value = String(form.get(key) ?? "").trim();
    if (value) request[key] = Number(value);
  }
  // What happens when the key is held matters only with a key.
  if (request.key && form.get("onConflict")) request.onConflict = String(form.get("onConflict"));
  if (form.get("worktree") && !profile) {
    request.isolation = "worktree";
    const base = String(form.get("baseRef") ?? "").trim();
    if (base) request.baseRef = base;
  }
  const button = $("#launch-submit");
  button.disabled = true;
  try {
    const { job } = await api.launch(request);
    // This page launched it, so it steers it (others may only watch): control is taken once
    // the page watches it (`select`).
    state.launchedHere.add(job.id);
    state.jobs.set(job.id, job);
    renderJobs();
    $("#launch-prompt").value = "";
    location.hash = `job=${job.id}`;
  } catch (error) {
    const field = error instanceof ApiError ? error.field : undefined;
    const slot = field && document.querySelector(`.field-error[data-field="${CSS.escape(field)}"]`);
    if (slot && !slot.closest("[hidden]")) {
      slot.textContent = error.message;
      document.getElementById(`launch-${field}`)?.setAttribute("aria-invalid", "true");
      document.getElementById(`launch-${field}`)?.focus();
    } else {
      showFormError(error.message);
    }
  } finally {
    button.disabled = false;
  }
}

// MARK: jobs

/** One row per job id, updated in place when the job changes. */
const jobRows = new Map();
let jobsFrame = 0;
function renderJobs() {
  if (jobsFrame) return;
  jobsFrame = requestAnimationFrame(() => {
    jobsFrame = 0;
    const jobs = [...state.jobs.values()].sort((a, b) => b.createdAt - a.createdAt);
    const shown = jobs.filter((job) => !state.filter || job.status === state.filter);
    for (const id of jobRows.keys()) if (!state.jobs.has(id)) jobRows.delete(id);
    placeRows($("#jobs tbody"), shown.map(jobRow));
    $("#jobs-empty").hidden = shown.length > 0;
    $("#jobs-empty").textContent = jobs.length ? "No jobs with this status." : "No jobs yet. Launch one on the left.";
    const running = jobs.filter((job) => isKillable(job)).length;
    // Jobs holding a slot against the operator's cap, and those waiting for one.
    const holding = jobs.filter((job) => isActive(job) && job.status !== "queued").length;
    const queued = jobs.filter((job) => job.status === "queued").length;
    const cap = state.capabilities?.admission?.maxRunning;
    $("#jobs-load").textContent = `${holding}${cap ? ` of ${cap}` : ""} running${queued ? ` · ${queued} queued` : ""}`;
    $("#kill-all").disabled = running === 0;
    // The snapshot holds the running jobs and the newest finished ones; older ones come a page
    // at a time from the job list.
    $("#jobs-older").hidden = state.jobs.size >= state.totalJobs;
    renderSelectedHeader();
  });
}

/** Puts `rows` into `body` in order, moving only rows that are out of place, so a row that
 * stays keeps its elements (and a focused Kill button keeps the focus). */
function placeRows(body, rows) {
  rows.forEach((row, index) => {
    const current = body.children[index];
    if (current !== row) body.insertBefore(row, current ?? null);
  });
  while (body.children.length > rows.length) body.lastElementChild.remove();
}

function jobRow(job) {
  let row = jobRows.get(job.id);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.job = job.id;
    const id = document.createElement("td");
    const link = document.createElement("a");
    link.href = `#job=${job.id}`;
    link.textContent = job.id.slice(0, 8);
    link.title = job.prompt;
    link.className = "mono";
    id.append(link);
    const cells = Array.from({ length: 9 }, () => document.createElement("td"));
    cells[0].className = "prompt";
    cells[1].className = "started";
    cells[4].className = "elapsed";
    row.append(document.createElement("td"), id, ...cells);
    // The whole row opens the job (on a phone the id column is hidden).
    row.addEventListener("click", (event) => {
      if (!event.target.closest("button, a")) location.hash = `#job=${job.id}`;
    });
    jobRows.set(job.id, row);
  }
  row.classList.toggle("selected", state.selected === job.id);
  const [status, , promptCell, started, provider, label, elapsedCell, exit, costCell, turns, actions] = row.children;
  if (row.dataset.status !== statusText(job) || status.firstChild?.title !== (job.queueReason ?? "")) {
    row.dataset.status = statusText(job);
    status.replaceChildren(statusBadge(job.status, statusText(job), job.queueReason ?? ""));
  }
  promptCell.title = job.prompt ?? "";
  const labelText = [job.project, job.label].filter(Boolean).join(" · ");
  for (const [cell, value] of [[promptCell, promptLine(job)], [started, startTime(job)], [provider, job.provider], [label, labelText], [elapsedCell, elapsed(job)],
    [exit, exitText(job)], [costCell, cost(job)], [turns, job.result?.numTurns ?? ""]]) {
    if (cell.textContent !== String(value)) cell.textContent = String(value);
  }
  const killable = isKillable(job);
  if (killable && !actions.firstChild) {
    const kill = document.createElement("button");
    kill.type = "button";
    kill.className = "danger small";
    kill.addEventListener("click", () => killJob(job.id));
    actions.append(kill);
  } else if (!killable && actions.firstChild) {
    actions.replaceChildren();
  }
  // A queued job is cancelled (it never runs), a running one killed.
  const verb = job.status === "queued" ? "Cancel" : "Kill";
  if (killable && actions.firstChild.textContent !== verb) {
    actions.firstChild.textContent = verb;
    actions.firstChild.setAttribute("aria-label", `${verb} job ${job.id}`);
  }
  return row;
}

function tick() {
  for (const row of document.querySelectorAll("#jobs tbody tr")) {
    const job = state.jobs.get(row.dataset.job);
    if (job && isActive(job)) row.querySelector(".elapsed").textContent = elapsed(job);
  }
  const job = state.jobs.get(state.selected);
  if (job) $("#job-meta").textContent = jobMeta(job);
}

async function killJob(id) {
  try {
    // Over the page's WebSocket: a viewer that does not control the job is refused.
    await connection.request({ op: "kill", job: id });
  } catch (error) {
    if (error.code !== "already_finished") alert(`Could not kill ${id}: ${error.message}`);
  }
}

/** Who watches the selected job and who steers it (its `presence`), with the buttons that
 * ask for control or hand it over; the message box shows only to whoever may steer. */
function renderControl() {
  const job = state.jobs.get(state.selected);
  if (!job) return;
  const presence = state.presence.get(job.id);
  const asks = [...(state.controlAsks.get(job.id) ?? [])];
  const mine = presence?.you === "controller";
  const held = presence && presence.controller !== null;
  let text = "";
  if (presence) {
    text = `${presence.viewers} watching · `;
    text += mine ? "you control this job" : held ? `connection ${presence.controller} controls this job` : "nobody controls this job: anyone may steer it";
  }
  $("#job-presence").textContent = text;
  $("#job-control-ask").hidden = !isActive(job) || !held || mine;
  $("#job-control-asks").textContent = mine && asks.length ? `connection ${asks[0]} asks for control` : "";
  $("#job-control-give").hidden = !mine || asks.length === 0;
  $("#job-message").hidden = !job.acceptsMessages || (held && !mine);
  // A finished job is continued: its agent's session resumes as the job's next run.
  $("#message-text").placeholder = isActive(job)
    ? "Send the agent a follow-up (Enter sends, Shift+Enter for a new line)"
    : "Continue this job: the agent's session resumes with your message (Enter sends)";
  renderQuestions(job, !held || mine);
}

/** The agent's open permission questions, each with a button per option for whoever may
 * steer (the others see the question, and that the controller answers it). */
function renderQuestions(job, mayAnswer) {
  const box = $("#job-questions");
  const open = isActive(job) ? [...(state.questions.get(job.id)?.values() ?? [])] : [];
  box.hidden = open.length === 0;
  box.replaceChildren(...open.map((question) => {
    const row = document.createElement("div");
    row.className = "question";
    const text = document.createElement("span");
    const left = question.expiresAt ? Math.max(0, Math.round((question.expiresAt - Date.now()) / 1000)) : null;
    text.textContent = `The agent asks permission for ${question.title}${left !== null ? ` (the operator's default answers in ${left} s)` : ""}`;
    row.append(text);
    for (const option of question.options ?? []) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `small ${String(option.kind ?? "").startsWith("allow") ? "primary" : ""}`;
      button.textContent = option.name ?? option.optionId;
      button.disabled = !mayAnswer;
      button.addEventListener("click", () => answerQuestion(job.id, question.request, option.optionId));
      row.append(button);
    }
    return row;
  }));
}

async function answerQuestion(id, request, optionId) {
  try {
    await connection.request({ op: "answer", job: id, request, optionId });
  } catch (error) {
    alert(`Could not answer: ${error.message}`);
  }
}

async function askForControl() {
  const id = state.selected;
  try {
    const reply = await connection.request({ op: "control", job: id });
    if (reply.asked) $("#job-presence").textContent += " · asked";
  } catch (error) {
    alert(`Could not ask for control of ${id}: ${error.message}`);
  }
}

async function handOver() {
  const id = state.selected;
  const asks = [...(state.controlAsks.get(id) ?? [])];
  if (!asks.length) return;
  try {
    await connection.request({ op: "handover", job: id, to: asks[0] });
    state.controlAsks.delete(id);
  } catch (error) {
    // Gone since it asked: the next asker, if any, is offered instead.
    if (error.code === "not_watching") state.controlAsks.get(id)?.delete(asks[0]);
    else alert(`Could not hand over ${id}: ${error.message}`);
  }
  renderControl();
}

/** Sends the follow-up in the box to the selected job's agent; it shows in the log as `› …`. */
async function sendMessage(event) {
  event.preventDefault();
  const id = state.selected;
  const box = $("#message-text");
  const text = box.value;
  if (!id || !text.trim()) return;
  $("#message-error").textContent = "";
  $("#message-send").disabled = true;
  try {
    // Over the page's WebSocket: a viewer that does not control the job is refused.
    await connection.request({ op: "send", job: id, text });
    box.value = "";
  } catch (error) {
    $("#message-error").textContent = error.message;
  } finally {
    $("#message-send").disabled = false;
  }
}

async function confirmDelete() {
  const job = state.jobs.get(state.selected);
  if (!job) return;
  $("#confirm-delete-text").textContent = `Job ${job.id}, its log and its files will be removed from the server for good.`;
  const dialog = $("#confirm-delete");
  dialog.returnValue = "";
  dialog.showModal();
}

/** The next page of older jobs from the job list (the snapshot has only the newest). */
async function loadOlderJobs() {
  const button = $("#jobs-older");
  button.disabled = true;
  try {
    // The snapshot has every running job and the newest finished ones: older pages start
    // after the oldest finished job shown.
    const finished = [...state.jobs.values()].filter((job) => !isActive(job));
    const oldest = finished.reduce((a, b) => (a && a.createdAt <= b.createdAt ? a : b), null);
    const cursor = state.olderCursor ?? (oldest ? `${oldest.createdAt}.${oldest.id}` : null);
    const page = await api.jobs(cursor);
    for (const job of page.jobs) if (!state.jobs.has(job.id)) state.jobs.set(job.id, job);
    state.olderCursor = page.nextCursor;
    if (!page.nextCursor) state.totalJobs = state.jobs.size;
    renderJobs();
  } catch (error) {
    alert(`Could not load older jobs: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

async function confirmKillAll() {
  const running = [...state.jobs.values()].filter((job) => isKillable(job)).length;
  $("#confirm-text").textContent = `${running} running job${running === 1 ? "" : "s"} will get SIGTERM, then SIGKILL after the grace period.`;
  const dialog = $("#confirm-kill-all");
  dialog.returnValue = "";
  dialog.showModal();
}

// MARK: the selected job

function jobMeta(job) {
  const parts = [job.provider];
  if (job.project) parts.push(`project ${job.project}`);
  if (job.label) parts.push(job.label);
  if (job.key) parts.push(`key ${job.key}`);
  if (job.status === "queued") {
    parts.push(`${statusText(job)}${job.queueReason ? `: ${job.queueReason}` : ""}`);
    parts.push(`waiting ${elapsed(job)}`);
    return parts.join(" · ");
  }
  parts.push(`started ${startTime(job)}`);
  parts.push(elapsed(job));
  const budget = budgetText(job);
  if (budget) parts.push(budget);
  if (job.admittedAt && job.admittedAt - job.createdAt >= 1000) parts.push(`waited ${Math.round((job.admittedAt - job.createdAt) / 1000)} s in the queue`);
  const exit = exitText(job);
  if (exit) parts.push(`exit ${exit}`);
  if (cost(job)) parts.push(cost(job));
  if (job.result?.numTurns) parts.push(`${job.result.numTurns} turn${job.result.numTurns === 1 ? "" : "s"}`);
  // It worked on while the server restarted; nothing of it was lost.
  if (job.worktree?.summary) parts.push(job.worktree.summary);
  if (job.reattachCount) parts.push(`re-attached after ${job.reattachCount === 1 ? "a server restart" : `${job.reattachCount} server restarts`}`);
  return parts.join(" · ");
}

function renderSelectedHeader() {
  const job = state.jobs.get(state.selected);
  if (!job) return;
  $("#job-title").textContent = `Job ${job.id}`;
  $("#job-status").replaceChildren(statusBadge(job.status, statusText(job), job.queueReason ?? ""));
  $("#job-meta").textContent = jobMeta(job);
  const prompt = $("#job-prompt");
  if (prompt.textContent !== job.prompt) prompt.textContent = job.prompt ?? "";
  $("#job-kill").hidden = !isKillable(job);
  $("#job-kill").textContent = job.status === "queued" ? "Cancel" : "Kill";
  $("#job-delete").hidden = isActive(job);
  renderControl();
  changeView?.render(job);
  renderResult(job);
}

function renderResult(job) {
  const finished = !isActive(job);
  const result = job.result;
  // A worktree job's diff has a section of its own.
  const said = result && Object.keys(result).some((key) => key !== "diff");
  $("#job-result").hidden = !finished || (!said && !job.errorTail && !job.hookError);
  // Why a run failed (an API error, max turns, a kill) comes first.
  const errors = job.status !== "done" ? (result?.errors ?? []).join("\n") : null;
  const text = [errors, result?.text, job.status !== "done" ? job.errorTail : null, job.hookError ? `hook: ${job.hookError}` : null]
    .filter(Boolean).join("\n\n");
  $("#result-text").textContent = text || "(no result text)";
  for (const [key, selector] of [["hook", "#result-hook"], ["output", "#result-output"]]) {
    const value = result?.[key];
    $(selector).hidden = value === undefined || value === null;
    if (value !== undefined && value !== null) {
      $(`${selector} pre`).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    }
  }
}

function select(id) {
  if (state.selected === id) return;
  if (state.selected) connection.unsubscribe(state.selected);
  state.selected = id;
  log.clear();
  showPartial(null);
  $("#log-search").value = "";
  log.search("");
  $("#log-matches").textContent = "";
  $("#job-view").hidden = !id;
  document.body.classList.toggle("has-job", Boolean(id));
  if (id) {
    connection.subscribe(id, 0);
    if (state.launchedHere.delete(id)) connection.request({ op: "control", job: id }).catch(() => {});
    renderSelectedHeader();
  }
  renderJobs();
}

function routeFromHash() {
  const match = location.hash.match(/job=([0-9a-f]{16})/);
  select(match ? match[1] : null);
}

function logLine(event) {
  switch (event.type) {
    case "job:log":
      // The user's turn in a conversation reads as the CLI prints it.
      if (event.stream === "user") return { text: `› ${event.text}`, stream: "user", kind: event.kind };
      return { text: event.text, stream: event.stream, kind: event.kind };
    case "job:started":
      // Queued: its log says where and why.
      if (event.info.status === "queued") return null;
      if (event.info.status === "preparing") return { text: `[agentgate] ${event.info.provider} preparing its worktree`, stream: "system", kind: "info" };
      return { text: `[agentgate] ${event.info.provider} started${event.info.pid ? ` (pid ${event.info.pid})` : ""}`, stream: "system", kind: "info" };
    case "job:queue":
      return { text: `[agentgate] ${ordinal(event.position)} in the queue${event.reason ? `: ${event.reason}` : ""}`, stream: "system", kind: "info" };
    case "job:status":
      // Admitted from the queue into making its worktree.
      if (event.info?.status === "preparing") return { text: `[agentgate] ${event.info.provider} preparing its worktree`, stream: "system", kind: "info" };
      // Running once admitted or its worktree is ready (stopping is said by the log).
      if (event.info?.status !== "running") return null;
      return { text: `[agentgate] ${event.info.provider} started${event.info.pid ? ` (pid ${event.info.pid})` : ""}`, stream: "system", kind: "info" };
    case "job:completed": {
      let text = `[agentgate] job ${event.status}`;
      if (event.exitCode !== null && event.exitCode !== undefined) text += ` (exit ${event.exitCode})`;
      if (event.signal) text += ` (${event.info?.signalName ?? `signal ${event.signal}`})`;
      return { text, stream: "system", kind: event.status === "done" ? "result" : "error" };
    }
    default:
      return null;
  }
}

// MARK: messages from the server

let pendingLines = [];
let linesFrame = 0;

/** The selected job's in-progress line (`job:partial`), under its log; null hides it. */
function showPartial(message) {
  const element = $("#log-partial");
  const text = message?.text ?? "";
  element.hidden = !text;
  element.textContent = text;
  element.className = `log-partial kind-${message?.kind ?? "text"}`;
}

function onMessage(message) {
  if (message.type === "job:partial") {
    if (message.job === state.selected) showPartial(message);
    return;
  }
  // Any stored event of the job replaces its in-progress line.
  if (message.job === state.selected && message.type?.startsWith("job:")) showPartial(null);
  switch (message.type) {
    case "snapshot":
      state.jobs = new Map(message.jobs.map((job) => [job.id, job]));
      state.totalJobs = message.total ?? message.jobs.length;
      state.olderCursor = null;
      renderJobs();
      return;
    case "presence":
      state.presence.set(message.job, message);
      // Asks are for a controller; a page that lost control forgets them.
      if (message.you !== "controller") state.controlAsks.delete(message.job);
      if (message.job === state.selected) renderControl();
      return;
    case "job:permission": {
      const open = state.questions.get(message.job) ?? new Map();
      if (message.answer === null || message.answer === undefined) open.set(message.request, message);
      else open.delete(message.request);
      state.questions.set(message.job, open);
      if (message.job === state.selected) renderControl();
      break;
    }
    case "control_request": {
      const asks = state.controlAsks.get(message.job) ?? new Set();
      asks.add(message.from);
      state.controlAsks.set(message.job, asks);
      if (message.job === state.selected) renderControl();
      return;
    }
    case "job:deleted":
      state.jobs.delete(message.job);
      state.totalJobs = Math.max(0, (state.totalJobs ?? 1) - 1);
      if (message.job === state.selected) $("#job-meta").textContent = "This job was deleted.";
      renderJobs();
      return;
    case "job:started":
    case "job:status":
    case "job:completed":
      state.jobs.set(message.info.id, message.info);
      renderJobs();
      break;
    case "job:queue": {
      // A queued job's new place: small, so the job is updated rather than sent again.
      const job = state.jobs.get(message.job);
      if (job && job.status === "queued") {
        state.jobs.set(message.job, { ...job, queuePosition: message.position, queueReason: message.reason ?? null });
        renderJobs();
      }
      break;
    }
    case "job:spend": {
      // What a budgeted job spent so far: its fields, so the list and its view show it live.
      const job = state.jobs.get(message.job);
      if (job) {
        state.jobs.set(message.job, { ...job, turns: message.turns ?? null, costUsd: message.costUsd ?? null });
        renderJobs();
      }
      break;
    }
    case "gap":
      if (message.job === state.selected) {
        pendingLines.push({ text: `[agentgate] events ${message.from}–${message.to} of this job are missing from the server's store`, stream: "system", kind: "error" });
        log.append(pendingLines);
        pendingLines = [];
      }
      return;
    case "error":
      if (message.code === "unknown_job" && state.selected) {
        $("#job-meta").textContent = "This job does not exist on the server.";
      }
      return;
    default:
      break;
  }
  if (message.job === state.selected && message.type?.startsWith("job:") && !message.beforeSubscribed) {
    const line = logLine(message);
    if (line) {
      pendingLines.push(line);
      if (!linesFrame) {
        linesFrame = requestAnimationFrame(() => {
          linesFrame = 0;
          log.append(pendingLines);
          pendingLines = [];
        });
      }
    }
  }
}

function onState(connectionState, seconds) {
  const badge = $("#connection");
  badge.dataset.state = connectionState;
  badge.textContent = connectionState === "live" ? "live"
    : connectionState === "reconnecting" ? `disconnected · reconnecting${seconds ? ` in ${seconds}s` : ""}…`
    : "connecting…";
}

// MARK: start

function wire() {
  changeView = new ChangeView($("#job-change"), api, (job) => {
    state.jobs.set(job.id, job);
    renderJobs();
  });
  $("#launch-worktree").addEventListener("change", (event) => { $("#launch-base-field").hidden = !event.target.checked; });
  $("#launch").addEventListener("submit", launch);
  $("#launch-provider").addEventListener("change", updateProviderFields);
  $("#launch-profile").addEventListener("change", updateProviderFields);
  $("#refresh-agents").addEventListener("click", refreshAgents);
  $("#status-filter").addEventListener("change", (event) => {
    state.filter = event.target.value;
    renderJobs();
  });
  $("#kill-all").addEventListener("click", confirmKillAll);
  $("#confirm-kill-all").addEventListener("close", async () => {
    if ($("#confirm-kill-all").returnValue === "kill") {
      try { await api.killAll(); } catch (error) { alert(`Could not kill all: ${error.message}`); }
    }
  });
  $("#job-kill").addEventListener("click", () => state.selected && killJob(state.selected));
  $("#job-delete").addEventListener("click", confirmDelete);
  $("#job-message").addEventListener("submit", sendMessage);
  $("#job-control-ask").addEventListener("click", askForControl);
  $("#job-control-give").addEventListener("click", handOver);
  $("#message-text").addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) sendMessage(event);
  });
  $("#jobs-older").addEventListener("click", loadOlderJobs);
  $("#confirm-delete").addEventListener("close", async () => {
    const id = state.selected;
    if ($("#confirm-delete").returnValue !== "delete" || !id) return;
    try {
      await api.deleteJob(id);
      select(null);
    } catch (error) {
      alert(`Could not delete ${id}: ${error.message}`);
    }
  });
  $("#job-close").addEventListener("click", () => { history.pushState(null, "", location.pathname); routeFromHash(); });
  $("#log-search").addEventListener("input", (event) => {
    const count = log.search(event.target.value);
    $("#log-matches").textContent = event.target.value ? `${count ? log.current + 1 : 0} of ${count}` : "";
  });
  $("#log-search").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    log.next(event.shiftKey);
    $("#log-matches").textContent = `${log.matches.length ? log.current + 1 : 0} of ${log.matches.length}`;
  });
  $("#log-copy").addEventListener("click", async () => {
    const button = $("#log-copy");
    try {
      await navigator.clipboard.writeText(log.text);
    } catch {
      const area = document.createElement("textarea");
      area.value = log.text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy all"; }, 1500);
  });
  $("#log-download").addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([log.text], { type: "text/plain" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `agentgate-job-${state.selected}.log`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  window.addEventListener("hashchange", routeFromHash);
  setInterval(tick, 1000);
}

function showSignedOut(reason) {
  connection?.close();
  const message = $("#signin-reason");
  message.textContent = typeof reason === "string" ? reason : "";
  message.hidden = typeof reason !== "string";
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  $("#signin").hidden = false;
  $("#connection").textContent = "signed out";
  $("#connection").dataset.state = "offline";
}

async function main() {
  window.addEventListener("agentgate:signed-out", () => showSignedOut());
  // A dashboard URL pasted into this tab changes only the fragment: sign in with it anew.
  window.addEventListener("hashchange", () => { if (hasTokenInAddress()) location.reload(); });
  $("#sign-out").addEventListener("click", async () => {
    await signOut();
    showSignedOut();
  });
  const outcome = await signIn();
  if (outcome !== "signed-in") {
    showSignedOut(outcome === "refused"
      ? "That token was refused: it is wrong, or it was rotated. Run “agentgate token” for the current one."
      : undefined);
    return;
  }
  $("#app").hidden = false;
  $("#sign-out").hidden = false;
  log = new LogView($("#log"), $("#log-follow"));
  log.onChange = () => { $("#log-count").textContent = `${log.lines.length.toLocaleString("en-US")} lines`; };
  window.dashboard = { log, state };  // for the browser tests and the console
  wire();
  connection = new Connection({ onMessage, onState });
  connection.subscribe("*");
  connection.open();
  routeFromHash();
  try {
    state.capabilities = await api.capabilities();
    renderAgents();
  } catch (error) {
    showFormError(`Could not load agents: ${error.message}`);
  }
}

main();
