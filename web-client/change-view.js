// A worktree job's change in the job view: where it is (branch, worktree, state), the files
// it changed with lines added and removed, and a readable diff — each file collapsible, large
// ones collapsed — with Apply and Discard behind a confirmation.
//
// Everything the agent wrote reaches the page as text (textContent), never as markup.

/** Files whose diff is longer than this start collapsed; so does every file of a diff
 * longer than `OPEN_TOTAL_LINES`. */
const OPEN_FILE_LINES = 200;
const OPEN_TOTAL_LINES = 600;
/** Lines of one file's diff drawn at most (the rest: download the diff). */
const MAX_FILE_LINES = 2000;

const STATUS_LETTER = { added: "A", modified: "M", deleted: "D", renamed: "R", copied: "C", type_changed: "T" };

export class ChangeView {
  /** `root`: the #job-change section; `api`: the REST calls; `onJob`: the job after an action. */
  constructor(root, api, onJob) {
    this.root = root;
    this.api = api;
    this.onJob = onJob;
    this.job = null;
    /** `${id}@${headCommit}` of the files drawn, so a re-render does not fetch again. */
    this.shown = "";
    this.$ = (selector) => root.querySelector(selector);
    this.$("#change-apply").addEventListener("click", () => this.confirm("#confirm-apply"));
    this.$("#change-discard").addEventListener("click", () => this.confirm("#confirm-discard"));
    this.$("#change-download").addEventListener("click", () => this.download());
    document.querySelector("#confirm-apply").addEventListener("close", (event) => {
      const mode = event.target.returnValue;
      if (mode === "merge" || mode === "patch") this.act(() => this.api.apply(this.job.id, mode));
    });
    document.querySelector("#confirm-discard").addEventListener("close", (event) => {
      if (event.target.returnValue === "discard") this.act(() => this.api.discard(this.job.id));
    });
  }

  /** Shows `job`'s change (hidden for a job that did not run in a worktree). */
  render(job) {
    const previous = this.job?.id;
    this.job = job;
    const worktree = job?.worktree;
    this.root.hidden = !worktree;
    if (!worktree) return;
    if (previous !== job.id) this.$("#change-error").replaceChildren();
    this.$("#change-summary").textContent = worktree.summary ?? (worktree.state === "preparing" ? "making the worktree…" : "recorded when the agent exits");
    const where = [`branch ${worktree.branch}`, `from ${worktree.baseRef}${worktree.baseCommit ? ` (${worktree.baseCommit.slice(0, 12)})` : ""}`];
    if (worktree.state !== "discarded") where.push(`worktree ${worktree.workingDirectory ?? worktree.path}`);
    if (worktree.appliedAs) where.push(`applied as ${worktree.appliedAs === "patch" ? "a patch" : "a merge"}${worktree.appliedTo ? ` onto ${worktree.appliedTo}` : ""}`);
    this.$("#change-where").textContent = where.join(" · ");
    const state = this.$("#change-state");
    state.textContent = worktree.state;
    state.className = `status change-${worktree.state}`;
    // Nothing is reviewed while an agent works in the worktree; a finished job's worktree can
    // always be discarded, recorded or not (its agent was interrupted, say).
    const working = ["preparing", "starting", "running", "stopping"].includes(job.status);
    this.$("#change-apply").hidden = working || !worktree.headCommit || worktree.state !== "ready";
    this.$("#change-discard").hidden = working || worktree.state === "discarded";
    this.$("#change-download").hidden = !worktree.headCommit;
    const key = worktree.headCommit ? `${job.id}@${worktree.headCommit}` : "";
    if (key === this.shown) return;
    this.shown = key;
    this.$("#change-files").replaceChildren();
    this.$("#change-note").textContent = "";
    if (key) this.load(job.id, key);
  }

  async load(id, key) {
    try {
      const diff = await this.api.diff(id);
      if (this.shown !== key) return;
      this.draw(diff);
    } catch (error) {
      if (this.shown === key) this.$("#change-note").textContent = `The diff could not be loaded: ${error.message}`;
    }
  }

  draw(diff) {
    const files = diff.files ?? [];
    const total = files.reduce((sum, file) => sum + lineCount(file.patch), 0);
    const notes = [];
    if (diff.truncated) notes.push(`The diff is cut at ${Math.round(diff.capBytes / 1024)} KiB; the file list is whole. Download the diff for what there is.`);
    if (diff.filesListed < diff.filesChanged) notes.push(`${diff.filesChanged - diff.filesListed} more files changed than are listed.`);
    if (!files.length) notes.push("The agent changed nothing.");
    this.$("#change-note").textContent = notes.join(" ");
    this.$("#change-files").replaceChildren(...files.map((file) => fileView(file, total <= OPEN_TOTAL_LINES)));
  }

  confirm(selector) {
    const worktree = this.job?.worktree;
    if (!worktree) return;
    const dialog = document.querySelector(selector);
    if (selector === "#confirm-apply") {
      dialog.querySelector(".text").textContent =
        `${worktree.summary ?? "The change"} from branch ${worktree.branch} into ${worktree.repository}. Merge commits it there; `
        + "as a patch, the files change and nothing is committed. Either way it goes through whole or not at all.";
    } else {
      dialog.querySelector(".text").textContent =
        `The worktree ${worktree.path} and branch ${worktree.branch} will be removed`
        + (worktree.state === "applied" ? "; the change was applied." : ". The change is lost: it was never applied.");
    }
    dialog.returnValue = "";
    dialog.showModal();
  }

  async act(call) {
    const error = this.$("#change-error");
    error.replaceChildren();
    for (const button of this.root.querySelectorAll("button")) button.disabled = true;
    try {
      const { job } = await call();
      this.onJob(job);
    } catch (failure) {
      error.append(failure.message);
      if (failure.conflicts?.length) {
        const list = document.createElement("ul");
        list.className = "conflicts";
        for (const path of failure.conflicts) {
          const item = document.createElement("li");
          item.textContent = path;
          list.append(item);
        }
        error.append(list);
      }
      error.scrollIntoView({ block: "nearest" });
    } finally {
      for (const button of this.root.querySelectorAll("button")) button.disabled = false;
    }
  }

  async download() {
    const id = this.job?.id;
    if (!id) return;
    try {
      const text = await this.api.patch(id);
      const url = URL.createObjectURL(new Blob([text], { type: "text/x-diff" }));
      const link = document.createElement("a");
      link.href = url;
      link.download = `agentgate-job-${id}.diff`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (error) {
      this.$("#change-note").textContent = `The diff could not be downloaded: ${error.message}`;
    }
  }
}

function lineCount(text) {
  if (!text) return 0;
  let count = 0;
  for (let index = text.indexOf("\n"); index !== -1; index = text.indexOf("\n", index + 1)) count += 1;
  return count;
}

/** One file: a summary line (status, path, +/−) that opens its piece of the diff. */
function fileView(file, smallDiff) {
  const details = document.createElement("details");
  details.className = "diff-file";
  details.dataset.path = file.path;
  const lines = file.patch ? file.patch.split("\n") : [];
  if (lines.at(-1) === "") lines.pop();
  details.open = smallDiff && lines.length <= OPEN_FILE_LINES;
  const summary = document.createElement("summary");
  const letter = document.createElement("span");
  letter.className = `file-status file-${file.status}`;
  letter.textContent = STATUS_LETTER[file.status] ?? "?";
  letter.title = file.status;
  const path = document.createElement("span");
  path.className = "file-path mono";
  path.textContent = file.oldPath ? `${file.oldPath} → ${file.path}` : file.path;
  const counts = document.createElement("span");
  counts.className = "file-counts mono";
  if (file.binary) {
    counts.textContent = "binary";
  } else {
    const adds = document.createElement("span");
    adds.className = "adds";
    adds.textContent = `+${file.additions ?? 0}`;
    const dels = document.createElement("span");
    dels.className = "dels";
    dels.textContent = `−${file.deletions ?? 0}`;
    counts.append(adds, " ", dels);
  }
  summary.append(letter, path, counts);
  details.append(summary);
  // Drawn when first opened: a collapsed file costs nothing.
  const draw = () => {
    if (details.querySelector(".diff-body")) return;
    const body = document.createElement("div");
    body.className = "diff-body mono";
    if (file.patch === null || file.patch === undefined) {
      body.append(note("This file is past the diff's size cap."));
    }
    for (const text of lines.slice(0, MAX_FILE_LINES)) {
      const row = document.createElement("div");
      row.className = `diff-line ${lineKind(text)}`;
      row.textContent = text || " ";
      body.append(row);
    }
    if (lines.length > MAX_FILE_LINES) body.append(note(`${lines.length - MAX_FILE_LINES} more lines: download the diff.`));
    details.append(body);
  };
  if (details.open) draw();
  details.addEventListener("toggle", () => { if (details.open) draw(); });
  return details;
}

function note(text) {
  const element = document.createElement("div");
  element.className = "diff-line note";
  element.textContent = text;
  return element;
}

function lineKind(text) {
  if (text.startsWith("@@")) return "hunk";
  if (text.startsWith("+++") || text.startsWith("---") || text.startsWith("diff --git") || text.startsWith("index ")
    || /^(new|deleted) file mode|^(rename|copy) (from|to) |^similarity index|^Binary files/.test(text)) return "meta";
  if (text.startsWith("+")) return "add";
  if (text.startsWith("-")) return "del";
  return "context";
}
