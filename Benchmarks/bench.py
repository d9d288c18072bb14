"""Fan-out benchmark: a real job through each server's API, N WebSocket viewers from a C
load generator, figures from the load generator and from /proc of the server.

Scenarios (issue 7):
  S1  100 viewers, 20,000 lines at 5,000/s
  S2  10 viewers, 200,000 lines as fast as the agent writes
  S3  1,000 viewers, 2,000 lines at 200/s
  S4  10,000 idle connections (server RSS per connection)
  S5  S1 plus one viewer that never reads
  S6  S1 with permessage-deflate negotiated by every viewer
  S7–S9  history at scale, agentgate only (Benchmarks/history.py)
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "Benchmarks")
TOOLS = os.path.join(ROOT, ".build", "bench")
TOKEN = "bench-token-0123456789abcdef0123456789"  # at least 32 characters, or serve refuses it
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SCENARIOS = {
    "S1": dict(viewers=100, lines=20_000, rate=5_000),
    "S2": dict(viewers=10, lines=200_000, rate=0),
    "S3": dict(viewers=1_000, lines=2_000, rate=200),
    "S4": dict(viewers=10_000, idle=5),
    "S5": dict(viewers=101, lines=20_000, rate=5_000, stall=1),
    "S6": dict(viewers=100, lines=20_000, rate=5_000, deflate=True),
}


def sh(command, **options):
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, **options)


def build(servers, swift=True):
    os.makedirs(TOOLS, exist_ok=True)
    sh(["gcc", "-O2", "-Wall", "-o", os.path.join(TOOLS, "fake_agent"), os.path.join(BENCH, "tools", "fake_agent.c")])
    sh(["gcc", "-O2", "-Wall", "-o", os.path.join(TOOLS, "loadgen"), os.path.join(BENCH, "tools", "loadgen.c"), "-lz"])
    if swift and any(kind.startswith("agentgate") for kind in servers):
        sh(["swift", "build", "-c", "release", "--product", "agentgate"], cwd=ROOT)
    if swift and "hummingbird" in servers:
        sh(["swift", "build", "-c", "release", "--package-path", os.path.join(BENCH, "hummingbird-peer")], cwd=ROOT)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, kind, work, port=None):
        self.kind = kind
        self.port = port or free_port()
        self.work = work
        env = {"PATH": f"{work}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": work, "AGENTGATE_TOKEN": TOKEN, "PORT": str(self.port)}
        if kind.startswith("agentgate"):
            # agentgate: each job under its supervisor, its output through spool files (serve's
            # default, issue 14); agentgate-pipes: jobs as the server's children with pipes
            # (serve --kill-jobs-on-exit), the path before issue 14.
            spooled = ["--kill-jobs-on-exit"] if kind == "agentgate-pipes" else []
            command = [os.path.join(ROOT, ".build", "release", "agentgate"), "serve", "--port", str(self.port),
                       "--data-dir", os.path.join(work, "data"), "--max-connections", "40000", "--max-connections-per-client", "40000",
                       # S10 runs 100 jobs at once: fan-out is measured here, not admission control.
                       "--max-running", "0"] + spooled
        else:
            command = [os.path.join(BENCH, "hummingbird-peer", ".build", "release", "HummingbirdPeer")]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        preexec_fn=raise_fd_limit)
        line = self.process.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"{kind} did not start: {line!r}")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

    def launch(self, prompt):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/agents/jobs", method="POST",
            data=json.dumps({"provider": "claude", "prompt": prompt}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["job"]["id"]

    def path(self, job):
        return f"/ws/jobs/{job}?format=json" if self.kind.startswith("agentgate") else f"/ws/jobs/{job}"

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stop_surviving_jobs()

    def stop_surviving_jobs(self):
        """Jobs outlive a stopped server by default: stop them through their supervisors."""
        jobs = os.path.join(self.work, "data", "jobs")
        for job in os.listdir(jobs) if os.path.isdir(jobs) else []:
            try:
                with open(os.path.join(jobs, job, "agent", "agent.json")) as record:
                    os.kill(json.load(record)["supervisor"], signal.SIGTERM)
            except (OSError, ValueError, KeyError):
                pass


def make_workdir(prefix):
    """A temporary directory with bin/claude: the fake agent, reading its arguments from
    the prompt on stdin (one stream-json user message: Claude's stdin stays open for
    follow-ups, so it reads that line, not to the end)."""
    work = tempfile.mkdtemp(prefix=prefix)
    os.makedirs(os.path.join(work, "bin"))
    with open(os.path.join(work, "bin", "claude"), "w") as wrapper:
        wrapper.write("#!/bin/sh\n"
                      'if [ "$1" = "--version" ]; then echo "2.1.12 (Claude Code)"; exit 0; fi\n'
                      'IFS= read -r message\n'
                      'set -- $(printf \'%s\' "$message" | sed \'s/.*"text":"\\([^"]*\\)".*/\\1/\')\n'
                      f'exec {TOOLS}/fake_agent "$@"\n')
    os.chmod(os.path.join(work, "bin", "claude"), 0o755)
    return work


def run_scenario(name, kind, spec):
    work = make_workdir(f"agentgate-bench-{kind}-")
    server = Server(kind, work)
    try:
        pid = server.process.pid
        ready = os.path.join(work, "ready")
        go = os.path.join(work, "go")
        base_rss = memory_kb(pid, "VmRSS")
        command = [os.path.join(TOOLS, "loadgen"), "--port", str(server.port), "--token", TOKEN,
                   "--conns", str(spec["viewers"]), "--ready-file", ready, "--timeout", "300"]
        if "idle" in spec:
            command += ["--path", "/ws" if kind.startswith("agentgate") else "/ws/jobs/idle", "--idle", str(spec["idle"])]
            loadgen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=raise_fd_limit)
            while not os.path.exists(ready) and loadgen.poll() is None:
                time.sleep(0.05)
            time.sleep(2)
            idle_rss = memory_kb(pid, "VmRSS")
            result = json.loads(loadgen.communicate(timeout=120)[0])
            result.update(server_rss_mb=idle_rss / 1024, bytes_per_conn=(idle_rss - base_rss) * 1024 / spec["viewers"])
            return result
        job = server.launch(f"{spec['lines']} {spec['rate']} {go} 40")
        command += ["--path", server.path(job), "--expect", str(spec["lines"])]
        if spec.get("deflate"):
            command.append("--deflate")
        if spec.get("stall"):
            command += ["--stall", str(spec["stall"])]
        loadgen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=raise_fd_limit)
        while not os.path.exists(ready) and loadgen.poll() is None:
            time.sleep(0.02)
        profiler = None
        if os.environ.get("BENCH_PERF") and kind == "agentgate":
            # A profile of the server during the run: perf's software clock works where
            # hardware counters are not available.
            profiler = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-p", str(pid),
                                         "-o", os.environ["BENCH_PERF"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu_before = cpu_seconds(pid)
        open(go, "w").close()
        output = loadgen.communicate(timeout=400)[0]
        cpu = cpu_seconds(pid) - cpu_before
        if profiler:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=30)
        result = json.loads(output)
        if kind.startswith("agentgate"):
            request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith("agentgate_slow_consumer_pauses_total "):
                        result["slow_viewer_pauses"] = int(line.split()[1])
        result.update(server_cpu_s=cpu, cpu_us_per_frame=cpu * 1e6 / max(1, result["frames"]),
                      peak_rss_mb=memory_kb(pid, "VmHWM") / 1024, rss_growth_mb=(memory_kb(pid, "VmHWM") - base_rss) / 1024)
        return result
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def table(results, servers):
    rows = []
    header = ["scenario", "server", "frames/s", "p50 ms", "p99 ms", "max ms", "CPU µs/frame", "peak RSS MB",
              "complete", "gaps", "dups", "failed", "loadgen CPU s"]
    for name, by_server in results.items():
        for kind in servers:
            r = by_server.get(kind)
            if r is None:
                continue
            if "bytes_per_conn" in r:
                rows.append([name, kind, "-", "-", "-", "-", "-", f"{r['server_rss_mb']:.1f} ({r['bytes_per_conn'] / 1024:.2f} KB/conn)",
                             str(r["conns"] - r["failed"]), "-", "-", str(r["failed"]), f"{r['loadgen_cpu_s']:.2f}"])
                continue
            rows.append([name, kind, f"{r['frames_per_second']:,.0f}", f"{r['p50_us'] / 1000:.2f}", f"{r['p99_us'] / 1000:.2f}",
                         f"{r['max_us'] / 1000:.1f}", f"{r['cpu_us_per_frame']:.2f}", f"{r['peak_rss_mb']:.1f}",
                         f"{r['complete_viewers']}/{r['conns'] - SCENARIOS[name].get('stall', 0)}", str(r["gaps"]), str(r["dups"]),
                         str(r["failed"]), f"{r['loadgen_cpu_s']:.2f}"])
        a, h = by_server.get("agentgate"), by_server.get("hummingbird")
        if a and h and "frames_per_second" in a and h.get("frames_per_second"):
            rows.append([name, "ratio", f"{a['frames_per_second'] / h['frames_per_second']:.2f}×",
                         f"{h['p50_us'] / max(1, a['p50_us']):.1f}× lower", f"{h['p99_us'] / max(1, a['p99_us']):.1f}× lower", "",
                         f"{h['cpu_us_per_frame'] / max(1e-9, a['cpu_us_per_frame']):.1f}× less", "", "", "", "", "", ""])
        elif a and h and "bytes_per_conn" in a:
            rows.append([name, "ratio", "", "", "", "", "", f"{h['bytes_per_conn'] / max(1, a['bytes_per_conn']):.1f}× less", "", "", "", "", ""])
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default=",".join(list(SCENARIOS) + ["S7", "S8", "S9", "S10"]))
    parser.add_argument("--servers", default="agentgate,hummingbird")
    parser.add_argument("--no-build", action="store_true", help="skip the Swift release builds (the C tools are always built)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run each scenario this many times per server (alternating) and keep the run with the median p99")
    args = parser.parse_args()
    servers = args.servers.split(",")
    build(servers, swift=not args.no_build)
    names = args.scenarios.split(",")
    history_names = [name for name in names if name in ("S7", "S8", "S9")]
    restart_result = None
    if "S10" in names and "agentgate" in servers:
        import restart
        # Like S1-S6: each round, then the median run (by the time every viewer was live
        # again; a run where some never were counts as the slowest), with every round's time.
        restarts = []
        for round in range(args.rounds):
            print(f"== S10 on agentgate (round {round + 1} of {args.rounds})", flush=True)
            restarts.append(restart.s10())
            print(json.dumps(restarts[-1]), flush=True)
        restart_result = restart.median(restarts)
    results = {}
    for name in [name for name in names if name in SCENARIOS]:
        runs = {kind: [] for kind in servers}
        for round in range(args.rounds):
            for kind in servers:  # alternating: each round runs on both servers
                print(f"== {name} on {kind} (round {round + 1} of {args.rounds})", flush=True)
                runs[kind].append(run_scenario(name, kind, SCENARIOS[name]))
                print(json.dumps(runs[kind][-1]), flush=True)
        # The median run by p99 latency (by RSS per connection for S4): one noisy round
        # neither flatters nor sinks a server.
        key = (lambda r: r["bytes_per_conn"]) if "idle" in SCENARIOS[name] else (lambda r: r["p99_us"])
        results[name] = {kind: sorted(runs[kind], key=key)[len(runs[kind]) // 2] for kind in servers}
    print()
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown CPU")
    print(f"machine: {os.cpu_count()} cores, {model}; {time.strftime('%Y-%m-%d')}; "
          f"{args.rounds} round(s) per scenario and server, the median run by p99 shown")
    if results:
        print(table(results, servers))
    if history_names and "agentgate" in servers:
        import history
        history_results = history.run(history_names)
        print()
        print("History at scale (agentgate; the peer has no stored history to replay):")
        print(history.table(history_results))
    if restart_result:
        import history
        import restart
        print()
        print("Restart (agentgate; jobs run under their supervisors and outlive the server):")
        print(history.format_rows([restart.row(restart_result)]))
    stalled = results.get("S5", {}).get("agentgate")
    if stalled and "slow_viewer_pauses" in stalled:
        print(f"S5: agentgate paused live delivery to the viewer that never reads {stalled['slow_viewer_pauses']} time(s); "
              f"peak RSS {stalled['peak_rss_mb']:.1f} MB against S1's {results.get('S1', {}).get('agentgate', {}).get('peak_rss_mb', 0):.1f} MB")


if __name__ == "__main__":
    main()
