// The first visit carries the token in the URL fragment (never sent to the server in a
// URL): trade it once for an HttpOnly session cookie, then drop it from the address bar.
async function signIn() {
  const match = location.hash.match(/token=([0-9a-f]+)/);
  if (match) {
    const response = await fetch("/api/session", { method: "POST", headers: { Authorization: `Bearer ${match[1]}` } });
    history.replaceState(null, "", location.pathname + location.search);
    if (!response.ok) return false;
  }
  const check = await fetch("/api/session");
  return check.ok;
}

const jobs = new Map();

function render() {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren(...[...jobs.values()].reverse().map((job) => {
    const row = document.createElement("tr");
    for (const value of [job.id, job.provider, job.label ?? "", job.status, job.lastSeq]) {
      const cell = document.createElement("td");
      cell.textContent = String(value ?? "");
      row.append(cell);
    }
    return row;
  }));
}

function follow() {
  const status = document.querySelector("#connection");
  const source = new EventSource("/api/agents/jobs/stream");
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
  source.addEventListener("snapshot", (event) => {
    jobs.clear();
    for (const job of JSON.parse(event.data).jobs) jobs.set(job.id, job);
    render();
  });
  for (const type of ["job:started", "job:completed"]) {
    source.addEventListener(type, (event) => {
      const data = JSON.parse(event.data);
      jobs.set(data.info.id, data.info);
      render();
    });
  }
  source.addEventListener("job:log", (event) => {
    const data = JSON.parse(event.data);
    const job = jobs.get(data.job);
    if (job) { job.lastSeq = data.seq; render(); }
  });
}

if (await signIn()) {
  follow();
} else {
  document.querySelector("#signin").hidden = false;
  document.querySelector("#connection").textContent = "signed out";
}
