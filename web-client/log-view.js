// A log that stays fast at any length: only the rows in view exist in the DOM (fixed-height
// rows, absolutely positioned), new lines are drawn once per animation frame, and the view
// follows new lines until the user scrolls up, resuming when they return to the bottom.

const OVERSCAN = 20;

export class LogView {
  constructor(element, followButton) {
    this.element = element;
    this.spacer = element.querySelector(".log-spacer");
    this.rowsElement = element.querySelector(".log-rows");
    this.followButton = followButton;
    this.lines = [];
    this.follow = true;
    this.query = "";
    this.matches = [];
    this.current = -1;
    this.onChange = () => {};
    this.scheduled = false;
    this.rowHeight = 0;
    element.addEventListener("scroll", () => {
      this.follow = this.#atBottom();
      this.followButton.hidden = this.follow;
      this.#schedule();
    });
    followButton.addEventListener("click", () => this.scrollToEnd());
    new ResizeObserver(() => this.#schedule()).observe(element);
  }

  clear() {
    this.lines = [];
    this.matches = [];
    this.current = -1;
    this.follow = true;
    this.followButton.hidden = true;
    this.element.scrollTop = 0;
    this.#schedule();
  }

  /// Appends lines: { text, stream, kind }.
  append(lines) {
    const start = this.lines.length;
    for (const line of lines) this.lines.push(line);
    if (this.query) {
      const needle = this.query;
      for (let index = start; index < this.lines.length; index++) {
        if (this.lines[index].text.toLowerCase().includes(needle)) this.matches.push(index);
      }
    }
    this.#schedule();
  }

  get text() {
    return this.lines.map((line) => line.text).join("\n") + (this.lines.length ? "\n" : "");
  }

  /// Finds every line containing `query` (case-insensitive); returns the match count.
  search(query) {
    this.query = query.toLowerCase();
    this.matches = [];
    this.current = -1;
    if (this.query) {
      this.lines.forEach((line, index) => {
        if (line.text.toLowerCase().includes(this.query)) this.matches.push(index);
      });
    }
    if (this.matches.length) this.next();
    this.#schedule();
    return this.matches.length;
  }

  /// Scrolls to the next (or previous) match.
  next(backwards = false) {
    if (!this.matches.length) return;
    const count = this.matches.length;
    this.current = backwards ? (this.current - 1 + count) % count : (this.current + 1) % count;
    this.scrollToLine(this.matches[this.current]);
  }

  scrollToLine(index) {
    this.#measure();
    this.follow = false;
    this.element.scrollTop = Math.max(0, index * this.rowHeight - this.element.clientHeight / 2);
    this.followButton.hidden = this.#atBottom();
    this.#schedule();
  }

  scrollToEnd() {
    this.follow = true;
    this.followButton.hidden = true;
    this.#schedule();
  }

  #atBottom() {
    const { scrollTop, clientHeight, scrollHeight } = this.element;
    return scrollTop + clientHeight >= scrollHeight - Math.max(4, this.rowHeight);
  }

  #measure() {
    if (this.rowHeight) return;
    const probe = document.createElement("div");
    probe.className = "line";
    probe.textContent = "x";
    this.rowsElement.append(probe);
    this.rowHeight = probe.getBoundingClientRect().height || 18;
    probe.remove();
  }

  #schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.#render();
    });
  }

  #render() {
    this.#measure();
    const height = this.rowHeight;
    this.spacer.style.height = `${this.lines.length * height}px`;
    if (this.follow) this.element.scrollTop = this.element.scrollHeight;
    const first = Math.max(0, Math.floor(this.element.scrollTop / height) - OVERSCAN);
    const visible = Math.ceil(this.element.clientHeight / height) + 2 * OVERSCAN;
    const last = Math.min(this.lines.length, first + visible);
    const currentLine = this.current >= 0 ? this.matches[this.current] : -1;
    const matchSet = this.query ? new Set(this.matches.filter((index) => index >= first && index < last)) : null;
    const rows = [];
    for (let index = first; index < last; index++) {
      const line = this.lines[index];
      const row = document.createElement("div");
      row.className = `line stream-${line.stream} kind-${line.kind}`;
      if (matchSet?.has(index)) row.classList.add(index === currentLine ? "match-current" : "match");
      row.style.top = `${index * height}px`;
      row.dataset.index = String(index + 1);
      row.textContent = line.text;
      rows.push(row);
    }
    this.rowsElement.replaceChildren(...rows);
    this.onChange();
  }
}
