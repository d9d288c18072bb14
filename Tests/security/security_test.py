"""The security suite of issue 11: each attack from the audit, reproduced against a real
`agentgate serve` (its own HOME and data dir, port 0, real child processes and sockets, real
Chromium for the cookie case) and shown refused.

Every test must fail on the code as it was before issue 11 (the attack succeeds there), so
each one also checks that its attack would work at all: the preload library, the interpreter
on PATH, BASH_ENV and NODE_OPTIONS each write their marker when run by hand, and the fake
agents record every run, so "the agent never ran with that argv" cannot pass by accident.

The fake agents (claude, codex, opencode, goose) are scripts on the server's PATH. Each
answers `--version`, records its argv, environment and working directory under the server's
records/ directory, sources <bin>/<name>.extra when a test put one there, and prints minimal
output of its kind.

Run with `Tests/security/run [NAME…]`; AGENTGATE_BIN picks the binary, AGENTGATE_WEB_ROOT the
dashboard folder (for a binary that cannot find its own). Prints one PASS/FAIL line per test
and ends with `N passed, N failed`; exits 1 on any failure.
"""

import asyncio
import base64
import http.client
import http.server
import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("AGENTGATE_BIN", os.path.join(ROOT, ".build", "debug", "agentgate"))
WEB_ROOT = os.environ.get("AGENTGATE_WEB_ROOT")
TOKEN = secrets.token_hex(32)
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
FINAL = {"done", "failed", "killed", "interrupted"}
MIB = 1 << 20
WORK = tempfile.mkdtemp(prefix="agentgate-security-")
SERVERS = []
STRAY_PIDS = set()

CLAUDE_OUTPUT = "\n".join([
    '{"type":"system","subtype":"init","session_id":"s-1","model":"fake","cwd":"/","tools":[],"permissionMode":"default"}',
    '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"hello"}]},"session_id":"s-1"}',
    '{"type":"result","subtype":"success","is_error":false,"duration_ms":1,"num_turns":1,"result":"hello","session_id":"s-1","total_cost_usd":0}',
])
OUTPUTS = {
    "claude": CLAUDE_OUTPUT,
    "codex": "\n".join([
        '{"type":"thread.started","thread_id":"t-1"}', '{"type":"turn.started"}',
        '{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"hello"}}',
        '{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":1}}',
    ]),
    "opencode": '{"type":"text","timestamp":1,"sessionID":"ses_1","part":{"type":"text","text":"hello"}}',
    "goose": '{"type":"message","message":{"role":"assistant","created":1,"content":[{"type":"text","text":"hello"}]}}\n{"type":"complete"}',
}
VERSIONS = {"claude": "2.1.12 (Claude Code)", "codex": "codex-cli 0.80.0", "opencode": "1.0.150", "goose": "1.20.0"}
PROVIDERS = list(OUTPUTS)


def note(text):
    print(f"    {text}", flush=True)


# ---------------------------------------------------------------------------- fake agents

def stdin_reader(name):
    """How the fake keeps what reached its stdin: claude's stays open after its one stream-json
    message (for follow-ups) until it answers, so it reads one line; opencode takes its prompt
    as an argument."""
    return {"claude": "/usr/bin/head -n 1", "opencode": ":"}.get(name, "/bin/cat")


def fake_agent_body(name, records, bin_dir):
    """The fake's shell body (without shebang)."""
    return f"""
if [ "$1" = "--version" ]; then echo "{VERSIONS[name]}"; exit 0; fi
if [ "$1" = "acp" ]; then exit 2; fi
rec="{records}/{name}.${{AGENTGATE_JOB_ID:-nojob}}.$$"
printf '%s\\0' "$@" > "$rec.argv"
/bin/cat /proc/$$/environ > "$rec.env"
pwd -P > "$rec.cwd"
{stdin_reader(name)} > "$rec.stdin"
[ -f "{bin_dir}/{name}.extra" ] && . "{bin_dir}/{name}.extra"
/bin/cat <<'AGENT_OUTPUT'
{OUTPUTS[name]}
AGENT_OUTPUT
"""


def write_executable(path, text):
    with open(path, "w") as file:
        file.write(text)
    os.chmod(path, 0o755)


def gcc(source, output, *flags):
    source_path = output + ".c"
    with open(source_path, "w") as file:
        file.write(source)
    subprocess.run(["gcc", "-O1", "-o", output, source_path, *flags], check=True, capture_output=True)
    return output


# ---------------------------------------------------------------------------- the server

_SERVE_OPTIONS = None


def serve_options():
    """The long options this binary's `serve --help` lists."""
    global _SERVE_OPTIONS
    if _SERVE_OPTIONS is None:
        result = subprocess.run([BINARY, "serve", "--help"], capture_output=True, text=True, timeout=30)
        _SERVE_OPTIONS = set(re.findall(r"(--[a-z][a-z0-9-]*)", result.stdout + result.stderr))
    return _SERVE_OPTIONS


FLAGS = {"--no-cgroup", "--allow-custom-commands"}


def supported(options):
    """`options` without the ones this binary lacks (each dropped with a note), so a test
    against an older binary shows its attack succeeding rather than a server that did not start."""
    known, kept, skip = serve_options(), [], False
    for index, option in enumerate(options):
        if skip:
            skip = False
            continue
        name = option.split("=", 1)[0]
        if option.startswith("--") and name not in known:
            takes_value = name not in FLAGS and "=" not in option
            note(f"note: this binary's serve has no {name}; running without {option}"
                 + (f" {options[index + 1]}" if takes_value and index + 1 < len(options) else ""))
            skip = takes_value
            continue
        kept.append(option)
    return kept


class Reply:
    def __init__(self, status, body, headers):
        self.status, self.body, self.headers = status, body, headers

    @property
    def code(self):
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def field(self):
        return self.body.get("field") if isinstance(self.body, dict) else None

    def __repr__(self):
        if isinstance(self.body, dict) and isinstance(self.body.get("job"), dict):
            return f"{self.status} (job {self.body['job'].get('id')} launched)"
        if self.code:
            return f"{self.status} {self.code} field={self.field}"
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return f"{self.status} {text[:150]!r}"


class Server:
    """One `agentgate serve` with its own HOME, data dir, fake agents and records."""

    def __init__(self, *options, env=None, token=TOKEN, pass_fds=(), data_dir=None):
        self.temp = tempfile.mkdtemp(prefix="server-", dir=WORK)
        self.home = os.path.join(self.temp, "home")
        self.bin = os.path.join(self.temp, "bin")
        self.records = os.path.join(self.temp, "records")
        for directory in (self.home, self.bin, self.records):
            os.makedirs(directory)
        self.data_dir = data_dir or os.path.join(self.temp, "data")
        for name in PROVIDERS:
            self.write_agent(name)
        self.options, self.extra_env, self.token, self.pass_fds = list(options), env or {}, token, pass_fds
        self.process = self.port = None
        self.output = []
        self.listening = threading.Event()
        SERVERS.append(self)

    def write_agent(self, name, shebang="#!/bin/sh"):
        write_executable(os.path.join(self.bin, name), shebang + "\n" + fake_agent_body(name, self.records, self.bin))

    def extra(self, name, text):
        """Shell code the fake `name` runs (sourced) after recording, before its output."""
        with open(os.path.join(self.bin, f"{name}.extra"), "w") as file:
            file.write(text)

    def environment(self):
        env = {"PATH": f"{self.bin}:{BASE_PATH}", "HOME": self.home, "LANG": "C.UTF-8"}
        if self.token:
            env["AGENTGATE_TOKEN"] = self.token
        env.update(self.extra_env)
        return env

    def start(self, timeout=20):
        arguments = [BINARY, "serve", "--port", "0", "--data-dir", self.data_dir, "--kill-grace", "1"]
        if WEB_ROOT:
            arguments += ["--web-root", WEB_ROOT]
        arguments += supported(self.options)
        self.listening.clear()
        self.process = subprocess.Popen(arguments, env=self.environment(), cwd=self.temp, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=self.pass_fds)
        threading.Thread(target=self._read_output, args=(self.process,), daemon=True).start()
        deadline = time.time() + timeout
        while not self.listening.wait(0.05):
            if self.process.poll() is not None or time.time() > deadline:
                raise AssertionError(f"server did not start (exit {self.process.poll()}): {''.join(self.output)[-2000:]}")
        return self

    def _read_output(self, process):
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace")
            self.output.append(line)
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                self.listening.set()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def cleanup(self):
        # Jobs outlive a stopped server (serve's default): end them first.
        if self.process and self.process.poll() is None and self.port:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("DELETE", "/api/agents/jobs", headers={"Authorization": f"Bearer {self.token or TOKEN}"})
                connection.getresponse().read()
                connection.close()
            except (OSError, http.client.HTTPException):
                pass
        self.stop()
        shutil.rmtree(self.temp, ignore_errors=True)

    def rss(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            return int(re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M).group(1)) * 1024

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def master_token(self):
        if self.token:
            return self.token
        with open(os.path.join(self.data_dir, "token")) as file:
            return file.read().strip()

    # HTTP

    def request(self, method, path, body=None, headers=None, auth=True, raw_body=None, timeout=10):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        all_headers = {}
        if auth is True:
            all_headers["Authorization"] = f"Bearer {self.master_token()}"
        elif isinstance(auth, str):
            all_headers["Authorization"] = f"Bearer {auth}"
        payload = raw_body
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return Reply(response.status, parsed, response.headers)

    def launch(self, body, **options):
        return self.request("POST", "/api/agents/jobs", body, **options)

    def job(self, job_id):
        return self.request("GET", f"/api/agents/jobs/{job_id}").body["job"]

    def wait_job(self, job_id, statuses=FINAL, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {sorted(statuses)}: {self.job(job_id)}")

    def runs(self):
        """Every recorded run of a fake agent: {agent, job, argv, env, cwd}."""
        found = []
        for entry in sorted(os.listdir(self.records)):
            if not entry.endswith(".argv"):
                continue
            base = os.path.join(self.records, entry[:-5])
            agent, job, _ = entry[:-5].split(".", 2)

            def read(suffix):
                try:
                    with open(base + suffix, "rb") as file:
                        return file.read()
                except OSError:
                    return b""
            environ = {}
            for item in read(".env").split(b"\0"):
                if b"=" in item:
                    key, _, value = item.decode(errors="replace").partition("=")
                    environ[key] = value
            argv = [arg.decode(errors="replace") for arg in read(".argv").split(b"\0")[:-1]]
            found.append({"agent": agent, "job": job, "argv": argv, "env": environ, "cwd": read(".cwd").decode().strip()})
        return found


class Problems:
    """Collects every way a test saw the attack succeed, so one run against an old binary
    says all of it."""

    def __init__(self):
        self.items = []

    def expect(self, condition, message):
        if not condition:
            self.items.append(message)
        return condition

    def done(self):
        if self.items:
            shown = self.items[:10] + ([f"… and {len(self.items) - 10} more"] if len(self.items) > 10 else [])
            raise AssertionError("\n      ".join(shown))


def expect_refused(problems, server, body, codes, fields, message):
    """Launches `body` and expects a 400 whose code is one of `codes` naming one of `fields`;
    a job that was launched anyway is waited for, so it cannot outlive the test."""
    reply = server.launch(body)
    problems.expect(reply.status == 400 and reply.code in codes and reply.field in fields, message(reply))
    if reply.status == 201:
        server.wait_job(reply.body["job"]["id"])
    return reply


class Skip(Exception):
    pass


TESTS = []


def test(function):
    TESTS.append(function)
    return function


def process_gone(pid, timeout):
    """Whether `pid` is gone or a zombie within `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                return True
        except (OSError, IndexError):
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.05)


def read_pid(path, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as file:
                text = file.read().strip()
            if text:
                STRAY_PIDS.add(int(text))
                return int(text)
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no pid in {path}")


# ---------------------------------------------------------------------------- §1 environment

def env_attack(key, value, marker, prompt="hello", shebang=None, agent_file=None, extra=None):
    """Launches claude with env {key: value} on a default server and on one started with
    `--pass-env '*'`: both must answer 400 naming the key, and no marker may appear. (A
    server that refuses to start with `--pass-env '*'`, saying so, refuses the attack too.)"""
    problems = Problems()
    for options, codes, label in (((), {"env_not_allowed", "env_forbidden"}, "default"),
                                  (("--pass-env", "*"), {"env_forbidden"}, "--pass-env '*'")):
        server = Server(*options)
        if shebang:
            server.write_agent("claude", shebang)
        if agent_file:
            shutil.copy(agent_file, os.path.join(server.bin, "claude"))
        if extra:
            server.extra("claude", extra)
        try:
            server.start()
        except AssertionError:
            if options and "--pass-env" in "".join(server.output):
                note(f"{label}: serve refuses to start ({''.join(server.output).strip()[:120]}…)")
                server.cleanup()
                continue
            raise
        reply = server.launch({"provider": "claude", "prompt": prompt, "env": {key: value}})
        if reply.status == 201:
            job = server.wait_job(reply.body["job"]["id"])
            note(f"{label}: launch with {key} accepted; job {job['status']}")
        problems.expect(reply.status == 400 and reply.code in codes and reply.field == f"env.{key}",
                        f"{label}: launch with env {key} answered {reply} (want 400 {'/'.join(sorted(codes))} env.{key})")
        problems.expect(not os.path.exists(marker), f"{label}: {key} ran the attacker's code (marker written)")
        if os.path.exists(marker):
            os.unlink(marker)
        server.cleanup()
    problems.done()


def marker_path(name):
    return os.path.join(WORK, f"marker-{name}")


def assert_attack_works_by_hand(command, env, marker, stdin=None):
    """The attack, run directly: it must write the marker, or the test could not fail."""
    subprocess.run(command, env=env, input=stdin, capture_output=True, timeout=10)
    if not os.path.exists(marker):
        raise AssertionError(f"the attack does not work even by hand ({command}); the test would prove nothing")
    os.unlink(marker)


@test
def env_ld_preload_runs_no_code():
    marker = marker_path("ld-preload")
    library = gcc(f"""
        #include <fcntl.h>
        #include <unistd.h>
        __attribute__((constructor)) static void pwn(void) {{
            int fd = open("{marker}", O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {{ write(fd, "preload\\n", 8); close(fd); }}
        }}""", os.path.join(WORK, "evil.so"), "-shared", "-fPIC")
    assert_attack_works_by_hand(["/bin/true"], {"LD_PRELOAD": library}, marker)
    env_attack("LD_PRELOAD", library, marker)


@test
def env_path_cannot_replace_the_interpreter():
    marker = marker_path("path")
    evil = os.path.join(WORK, "evil-path")
    os.makedirs(evil, exist_ok=True)
    for name in ("sh", "env", "claude", "node"):
        write_executable(os.path.join(evil, name), f'#!/bin/sh\necho "{name}" >> "{marker}"\nexec /bin/sh "$@"\n')
    # The fake claude is `#!/usr/bin/env sh`, like an npm-installed CLI's `#!/usr/bin/env node`.
    probe = os.path.join(WORK, "env-sh-claude")
    write_executable(probe, "#!/usr/bin/env sh\necho hi\n")
    assert_attack_works_by_hand([probe], {"PATH": f"{evil}:{BASE_PATH}"}, marker)
    env_attack("PATH", f"{evil}:{BASE_PATH}", marker, shebang="#!/usr/bin/env sh")


@test
def env_bash_env_cannot_run_the_prompt():
    marker = marker_path("bash-env")
    prompt = f'echo bash_env >> "{marker}"'
    probe = os.path.join(WORK, "bash-claude")
    write_executable(probe, "#!/bin/bash\ncat >/dev/null\n")
    assert_attack_works_by_hand([probe], {"BASH_ENV": "/proc/self/fd/0", "PATH": BASE_PATH}, marker, stdin=prompt.encode())
    env_attack("BASH_ENV", "/proc/self/fd/0", marker, prompt=prompt, shebang="#!/bin/bash")


@test
def env_node_options_runs_no_javascript():
    node = shutil.which("node")
    if not node:
        raise Skip("node is not installed")
    marker = marker_path("node-options")
    evil = os.path.join(WORK, "evil.js")
    with open(evil, "w") as file:
        file.write(f"require('fs').appendFileSync({json.dumps(marker)}, 'node\\n');\n")
    agent = os.path.join(WORK, "node-claude")
    write_executable(agent, f"""#!{node}
if (process.argv[2] === '--version') {{ console.log({json.dumps(VERSIONS['claude'])}); process.exit(0); }}
process.stdin.once('data', () => {{ console.log({json.dumps(CLAUDE_OUTPUT)}); process.exit(0); }});
""")
    assert_attack_works_by_hand([agent, "--version"], {"NODE_OPTIONS": f"--require={evil}", "PATH": BASE_PATH}, marker)
    env_attack("NODE_OPTIONS", f"--require={evil}", marker, agent_file=agent)


@test
def env_openssl_conf_loads_no_library():
    """Found by the attacker trial once the first deny list was in: OPENSSL_CONF names a
    config that loads a provider, whose constructor runs in anything linked to OpenSSL the
    agent starts (curl, node, git over https) — accepted then with `--pass-env '*'`."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise Skip("openssl is not installed")
    marker = marker_path("openssl-conf")
    library = gcc(f"""
        #include <fcntl.h>
        #include <unistd.h>
        __attribute__((constructor)) static void pwn(void) {{
            int fd = open("{marker}", O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {{ write(fd, "openssl\\n", 8); close(fd); }}
        }}""", os.path.join(WORK, "evil-provider.so"), "-shared", "-fPIC")
    config = os.path.join(WORK, "evil-openssl.cnf")
    with open(config, "w") as file:
        file.write("openssl_conf = init\n[init]\nproviders = providers\n[providers]\nevil = evil\n"
                   f"[evil]\nmodule = {library}\nactivate = 1\n")
    assert_attack_works_by_hand([openssl, "version"], {"OPENSSL_CONF": config, "PATH": BASE_PATH}, marker)
    env_attack("OPENSSL_CONF", config, marker, extra=f"{openssl} version >/dev/null 2>&1\n")


@test
def env_pass_env_allows_only_what_the_operator_named():
    problems = Problems()
    server = Server("--pass-env", "FOO", "--pass-env", "BAR_*").start()
    reply = server.launch({"provider": "claude", "prompt": "hello", "env": {"FOO": "bar", "BAR_X": "1"}})
    problems.expect(reply.status == 201, f"FOO and BAR_X (allowed) answered {reply}")
    if reply.status == 201:
        job_id = reply.body["job"]["id"]
        server.wait_job(job_id)
        runs = [run for run in server.runs() if run["job"] == job_id]
        problems.expect(runs and runs[0]["env"].get("FOO") == "bar" and runs[0]["env"].get("BAR_X") == "1",
                        f"the agent did not see FOO=bar, BAR_X=1: {runs[0]['env'] if runs else 'no run'}")
    for key, codes in (("OTHER", {"env_not_allowed"}), ("FOOBAR", {"env_not_allowed"}),
                       ("LD_PRELOAD", {"env_not_allowed", "env_forbidden"})):
        expect_refused(problems, server, {"provider": "claude", "prompt": "hello", "env": {key: "1"}}, codes, {f"env.{key}"},
                       lambda reply: f"env {key} (not allowed) answered {reply}")
    problems.done()


@test
def env_pass_env_takes_named_keys_not_a_wildcard():
    """Found by the second attacker trial: with `--pass-env '*'`, keys no deny list had (make's
    RM and TARGET_ARCH, gcc's GCC_EXEC_PREFIX, npm's PREFIX, setuptools' LDSHARED) ran the
    attacker's code in the agent's build commands. `*` and bare prefixes are now refused at
    start, as is naming any of those keys; a namespace of the operator's own still works."""
    problems = Problems()
    env = {"PATH": BASE_PATH, "HOME": WORK, "AGENTGATE_TOKEN": TOKEN}
    data = tempfile.mkdtemp(prefix="passenv-", dir=WORK)
    for pattern in ("*", "C*", "A*", "RM", "GCC_EXEC_PREFIX", "PREFIX", "LDSHARED", "TARGET_ARCH", "CC_*", "GIT_*", "CLOUDSDK_*",
                    "CLOUDSDK_PYTHON", "GH_*", "VAULT_ADDR"):
        outcome, output = serve_outcome(["--data-dir", data, "--pass-env", pattern], env)
        problems.expect(outcome not in ("listening", "hung") and "--pass-env" in output,
                        f"serve --pass-env {pattern!r}: {outcome} ({output.strip()[-160:]!r})")
    outcome, output = serve_outcome(["--data-dir", data, "--pass-env", "MYAPP_*"], env)
    problems.expect(outcome == "listening", f"serve --pass-env MYAPP_*: {outcome} ({output.strip()[-160:]!r})")
    problems.done()


@test
def env_agent_environment_is_scrubbed_and_job_id_cannot_be_spoofed():
    problems = Problems()
    server = Server(env={"CLAUDECODE": "1", "CLAUDE_CODE_ENTRYPOINT": "cli"}).start()
    spoofed = "ffffffffffffffff"
    for key, value in (("AGENTGATE_JOB_ID", spoofed), ("AGENTGATE_URL", "http://evil.example")):
        expect_refused(problems, server, {"provider": "claude", "prompt": "hello", "env": {key: value}},
                       {"env_forbidden"}, {f"env.{key}"}, lambda reply: f"env {key} answered {reply} (want 400 env_forbidden)")
    reply = server.launch({"provider": "claude", "prompt": "hello"})
    job_id = reply.body["job"]["id"]
    server.wait_job(job_id)
    for run in server.runs():
        env = run["env"]
        problems.expect(env.get("AGENTGATE_JOB_ID") != spoofed, "the agent ran with a spoofed AGENTGATE_JOB_ID")
        problems.expect(env.get("AGENTGATE_URL") != "http://evil.example", "the agent ran with a spoofed AGENTGATE_URL")
        problems.expect(not any(TOKEN in value for value in env.values()),
                        f"the agent's environment holds the server's token ({[k for k, v in env.items() if TOKEN in v]})")
    run = next((run for run in server.runs() if run["job"] == job_id), None)
    if problems.expect(run is not None, "the plain launch left no record"):
        env = run["env"]
        problems.expect("CLAUDECODE" not in env and "CLAUDE_CODE_ENTRYPOINT" not in env,
                        "the nesting markers CLAUDECODE / CLAUDE_CODE_ENTRYPOINT reached the agent")
        problems.expect(env.get("NO_COLOR") == "1", f"NO_COLOR is {env.get('NO_COLOR')!r}, want 1")
        problems.expect(env.get("AGENTGATE_JOB_ID") == job_id, f"AGENTGATE_JOB_ID is {env.get('AGENTGATE_JOB_ID')!r}")
    problems.done()


# ---------------------------------------------------------------------------- §1 argv

INJECTIONS = ["--auto", "-x", "a\nb", "x\u001b[31m", "--share", "--attach=http://evil"]
ARGV_CODES = {"invalid_field", "unsupported_field", "unknown_field"}
CWD_CODES = ARGV_CODES | {"invalid_cwd", "cwd_outside_workspace", "cwd_forbidden"}


def has_control(text):
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


@test
def argv_injection_through_every_field_of_every_provider():
    problems = Problems()
    server = Server().start()
    # A plain launch of each provider runs its fake and is recorded: the check below can see a run.
    for provider in PROVIDERS:
        reply = server.launch({"provider": provider, "prompt": "hello"})
        if problems.expect(reply.status == 201, f"plain {provider} launch answered {reply}"):
            server.wait_job(reply.body["job"]["id"])
    recorded = {run["agent"] for run in server.runs()}
    if recorded != set(PROVIDERS):
        raise AssertionError(f"the fake agents did not all record their runs ({sorted(recorded)}); the test would prove nothing")

    accepted = []
    cases = []
    for provider in PROVIDERS:
        for field in ("model", "effort", "reasoningEffort", "resumeSession", "label", "cwd"):
            for value in INJECTIONS:
                if field == "label" and not has_control(value):
                    continue  # a label never reaches argv: only control characters are refused there
                cases.append((provider, field, value, CWD_CODES if field == "cwd" else ARGV_CODES))
        for value in ("5", -1, 0, 1.5, True, "--auto", 10 ** 12, [1]):
            cases.append((provider, "maxTurns", value, ARGV_CODES))
        if provider in ("codex", "goose"):
            cases.append((provider, "maxBudgetUsd", 5, {"unsupported_field"}))  # no cost reported: never silently dropped
        if provider == "goose":
            cases.append((provider, "effort", "high", {"unsupported_field"}))
    for provider, field, value, codes in cases:
        reply = server.launch({"provider": provider, "prompt": "hello", field: value})
        fields = {field, "effort"} if field == "reasoningEffort" else {field}
        problems.expect(reply.status == 400 and reply.code in codes and reply.field in fields,
                        f"{provider} {field}={value!r} answered {reply}")
        if reply.status == 201:
            accepted.append(reply.body["job"]["id"])
    for job_id in accepted:
        server.wait_job(job_id)
    note(f"{len(cases)} injections, {len(accepted)} accepted")
    for run in server.runs():
        for argument in run["argv"]:
            bad = [value for value in INJECTIONS if value in argument and value != "-x"] + (["control"] if has_control(argument) else [])
            if argument == "-x":
                bad.append("-x")
            problems.expect(not bad, f"fake {run['agent']} ran with argv {run['argv']}")
    problems.done()


@test
def argv_unknown_fields_are_refused():
    problems = Problems()
    server = Server().start()
    for field, value in (("permissionMode", "bypassPermissions"), ("dangerouslySkipPermissions", True),
                         ("sandbox", "danger-full-access"), ("args", ["--yolo"])):
        expect_refused(problems, server, {"provider": "claude", "prompt": "hello", field: value}, {"unknown_field"}, {field},
                       lambda reply: f"unknown field {field} answered {reply} (want 400 unknown_field)")
    problems.done()


@test
def cwd_is_confined_to_the_workspace():
    problems = Problems()
    outside = os.path.join(WORK, "outside")
    os.makedirs(outside, exist_ok=True)
    server = Server()
    home = server.home
    server.options = ["--workspace", home]
    server.data_dir = os.path.join(home, ".agentgate")  # the data dir inside the workspace
    project = os.path.join(home, "project")
    os.makedirs(os.path.join(home, ".ssh"))
    os.makedirs(project)
    os.symlink(outside, os.path.join(home, "link-out"))
    server.start()
    cases = [
        (outside, {"cwd_outside_workspace"}),
        ("/", {"cwd_outside_workspace"}),
        (os.path.join(project, "..", "..", "..", "outside"), {"cwd_outside_workspace"}),
        (os.path.join(home, "link-out"), {"cwd_outside_workspace"}),
        (os.path.join(home, ".ssh"), {"cwd_forbidden"}),
        (os.path.join(home, ".agentgate"), {"cwd_forbidden"}),
    ]
    for cwd, codes in cases:
        expect_refused(problems, server, {"provider": "claude", "prompt": "hello", "cwd": cwd}, codes, {"cwd"},
                       lambda reply: f"cwd {cwd} answered {reply} (want 400 {'/'.join(codes)})")
    reply = server.launch({"provider": "claude", "prompt": "hello", "cwd": project})
    if problems.expect(reply.status == 201, f"cwd inside the workspace answered {reply}"):
        job_id = reply.body["job"]["id"]
        server.wait_job(job_id)
    runs = server.runs()
    allowed = os.path.realpath(project)
    for run in runs:
        problems.expect(run["cwd"] == allowed, f"the agent ran in {run['cwd']}")
    problems.expect(any(run["cwd"] == allowed for run in runs), "the allowed launch left no record")
    problems.done()


# ---------------------------------------------------------------------------- §2 sessions

async def websocket_status(port, subprotocols=None, headers=None):
    """101 and the reply to a subscribe, or the refusal's status."""
    import websockets
    from websockets.asyncio.client import connect
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=subprotocols, additional_headers=headers,
                           open_timeout=5) as ws:
            await ws.send(json.dumps({"op": "subscribe", "job": "*", "req": 1}))
            return 101, json.loads(await asyncio.wait_for(ws.recv(), 5))
    except websockets.InvalidStatus as error:
        return error.response.status_code, None


@test
def session_api_mints_revocable_credentials_and_rotation_ends_them():
    problems = Problems()
    server = Server(token=None).start()  # the token lives in <data>/token, so it can be rotated
    master = server.master_token()
    reply = server.request("POST", "/api/session")
    session = reply.body.get("session") if isinstance(reply.body, dict) else None
    problems.expect(reply.status == 201 and isinstance(session, str) and re.fullmatch(r"[0-9a-f]{64}", session or ""),
                    f"POST /api/session answered {reply} (want 201 with a 64-hex session)")
    # A Set-Cookie that clears an old cookie (empty value) is fine; one with a value is not.
    for cookie in reply.headers.get_all("Set-Cookie") or []:
        value = cookie.split(";", 1)[0].partition("=")[2].strip()
        problems.expect(not value, f"POST /api/session set a cookie with a value: {cookie[:60]}…")
        problems.expect(master not in cookie, "the cookie holds the master token")
    if not session:
        problems.done()
    problems.expect(session != master, "the session is the master token")
    problems.expect(server.request("GET", "/api/agents/jobs", auth=session).status == 200, "the session does not authenticate REST")
    status, message = asyncio.run(websocket_status(server.port, ["agentgate.v1", f"agentgate.token.{session}"]))
    problems.expect(status == 101 and message and message.get("type") == "ack", f"the session over the WS subprotocol: {status} {message}")
    minted = server.request("POST", "/api/session", auth=session)
    problems.expect(minted.status in (401, 403), f"a session minted another session: {minted}")
    problems.expect(server.request("DELETE", "/api/session", auth=session).status == 204, "DELETE /api/session did not answer 204")
    problems.expect(server.request("GET", "/api/agents/jobs", auth=session).status == 401, "a signed-out session still works over REST")
    status, _ = asyncio.run(websocket_status(server.port, ["agentgate.v1", f"agentgate.token.{session}"]))
    problems.expect(status == 401, f"a signed-out session still opens a WebSocket ({status})")

    second = server.request("POST", "/api/session").body["session"]
    rotated = subprocess.run([BINARY, "token", "--rotate", "--data-dir", server.data_dir], env=server.environment() | {"AGENTGATE_TOKEN": ""},
                             capture_output=True, text=True, timeout=20)
    problems.expect(rotated.returncode == 0, f"token --rotate failed: {rotated.stderr}")
    new = server.master_token()
    problems.expect(new != master, "token --rotate left the token as it was")
    deadline = time.time() + 2.5
    while time.time() < deadline:
        states = (server.request("GET", "/api/agents/jobs", auth=master).status,
                  server.request("GET", "/api/agents/jobs", auth=second).status,
                  server.request("GET", "/api/agents/jobs", auth=new).status)
        if states == (401, 401, 200):
            break
        time.sleep(0.1)
    problems.expect(states == (401, 401, 200), f"2.5 s after rotation old token/old session/new token answer {states}, want (401, 401, 200)")
    problems.done()


def reads_to_end(sock):
    """Whether the peer closes before a read times out."""
    try:
        while sock.recv(65536):
            pass
        return True
    except OSError:
        return False


async def socket_rights_after(port, credential, end_credential, wait=1.5):
    """Opens /ws with `credential`, runs `end_credential()` (a sign-out or a rotation), waits,
    then asks the socket to launch a job: what happened ("closed 4401", or what it answered)."""
    import websockets
    from websockets.asyncio.client import connect
    async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["agentgate.v1", f"agentgate.token.{credential}"],
                       open_timeout=5) as ws:
        await ws.send(json.dumps({"op": "subscribe", "job": "*", "req": 1}))
        await asyncio.wait_for(ws.recv(), 5)
        await asyncio.get_running_loop().run_in_executor(None, end_credential)
        await asyncio.sleep(wait)
        try:
            await ws.send(json.dumps({"op": "launch", "req": 2, "provider": "claude", "prompt": "after the credential ended"}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 3))
                if message.get("req") == 2:
                    return f"answered the launch: {message.get('type')} {message.get('code') or message.get('job', {}).get('id', '')}"
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            return f"closed {code}"
        except asyncio.TimeoutError:
            return "silent"


@test
def an_open_socket_loses_its_rights_when_its_credential_ends():
    """Found by the attacker trial: a WebSocket opened before a sign-out or a token rotation
    kept launching and killing jobs. Now it is closed with 4401 within a second, and so is an
    SSE stream opened with the signed-out session."""
    problems = Problems()
    server = Server(token=None).start()
    master = server.master_token()
    session = server.request("POST", "/api/session").body["session"]
    stream = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    stream.sendall(f"GET /api/agents/jobs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {session}\r\n\r\n".encode())
    problems.expect(stream.recv(65536).startswith(b"HTTP/1.1 200"), "the SSE stream did not open")
    outcome = asyncio.run(socket_rights_after(server.port, session, lambda: server.request("DELETE", "/api/session", auth=session)))
    problems.expect(outcome == "closed 4401", f"a WebSocket of a signed-out session {outcome} 1.5 s later (want closed 4401)")
    stream.settimeout(3)
    problems.expect(reads_to_end(stream), "an SSE stream of a signed-out session was still open 3 s later")
    stream.close()

    def rotate():
        subprocess.run([BINARY, "token", "--rotate", "--data-dir", server.data_dir], env=server.environment() | {"AGENTGATE_TOKEN": ""},
                       capture_output=True, timeout=20)
    outcome = asyncio.run(socket_rights_after(server.port, master, rotate, wait=2))
    problems.expect(outcome == "closed 4401", f"a WebSocket opened with the old token {outcome} 2 s after rotation (want closed 4401)")
    jobs = server.request("GET", "/api/agents/jobs", auth=server.master_token()).body["jobs"]
    problems.expect(not jobs, f"{len(jobs)} job(s) were launched over sockets whose credential had ended")
    problems.done()


@test
def silent_sockets_reopened_cannot_lock_clients_out():
    """Found by the attacker trial: 256 bare connections, reopened as the 5 s deadline closed
    them, got every new client 503. Now a new connection makes room by closing the oldest
    one that has not made a request."""
    problems = Problems()
    server = Server().start()
    stop = threading.Event()
    held = []

    opened = [0]

    def attacker():
        while not stop.is_set():
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            held.append(sock)
            opened[0] += 1
            while len(held) > 1000:  # the server keeps 256 of them: every new one evicts one
                held.pop(0).close()
            if opened[0] % 50 == 0:
                time.sleep(0.01)
    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    time.sleep(1)
    statuses = []
    deadline = time.time() + 7  # past the 5 s deadline, when the old code's lock-out began again
    while time.time() < deadline:
        try:
            statuses.append(server.request("GET", "/api/agents/jobs", timeout=5).status)
        except OSError as error:
            statuses.append(str(error))
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=5)
    for sock in held:
        sock.close()
    refused = [status for status in statuses if status != 200]
    note(f"{len(statuses)} requests while {opened[0]} silent sockets were opened: {len(refused)} not answered 200")
    problems.expect(not refused, f"{len(refused)} of {len(statuses)} requests were not answered 200: {sorted(set(map(str, refused)))}")
    problems.done()


@test
def cli_kill_of_a_non_id_kills_nothing():
    """Found by the attacker trial: `agentgate kill '?'` (or `''`) sent DELETE
    /api/agents/jobs/? — the route that kills every job."""
    problems = Problems()
    server = Server()
    server.extra("claude", 'case "$(cat "$rec.stdin")" in *\\"text\\":\\"hang*) exec sleep 300 </dev/null >/dev/null 2>&1;; esac\n')
    server.start()
    ids = [server.launch({"provider": "claude", "prompt": "hang"}).body["job"]["id"] for _ in range(2)]
    for job_id in ids:
        server.wait_job(job_id, {"running"})
    env = {"PATH": BASE_PATH, "HOME": server.home, "AGENTGATE_TOKEN": TOKEN}
    for bad in ("?", "", "#", "./"):
        result = subprocess.run([BINARY, "kill", bad, "--server", server.url], env=env, capture_output=True, text=True, timeout=20)
        note(f"kill {bad!r}: exit {result.returncode}: {(result.stdout + result.stderr).strip()[:100]}")
    for path in ("/api/agents/jobs/", "/api/agents/jobs/?", "/api/agents/jobs//"):
        reply = server.request("DELETE", path)
        problems.expect(reply.status >= 400, f"DELETE {path} answered {reply.status}")
    time.sleep(0.5)
    statuses = [server.job(job_id)["status"] for job_id in ids]
    problems.expect(statuses == ["running", "running"], f"after `kill '?'` and friends the jobs are {statuses}")
    server.cleanup()
    problems.done()


class CookieCatcher(http.server.BaseHTTPRequestHandler):
    """Another server on 127.0.0.1 (another port): what would a browser send it?"""
    received = []

    def do_GET(self):
        CookieCatcher.received.append(dict(self.headers))
        body = b"<html><body>another local server</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@test
def browser_no_cookie_carries_a_credential_and_sign_out_revokes():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    problems = Problems()
    server = Server().start()
    catcher = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CookieCatcher)
    threading.Thread(target=catcher.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--user-data-dir={os.path.join(server.temp, 'chromium')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
    try:
        driver.set_script_timeout(10)
        driver.get(f"{server.url}/#token={TOKEN}")
        WebDriverWait(driver, 20, 0.1).until(
            lambda d: d.execute_script("return document.querySelector('#connection')?.textContent") == "live",
            "the dashboard never signed in")
        problems.expect("token" not in driver.current_url, f"the token is still in the address bar: {driver.current_url}")

        def storage():
            return driver.execute_script(
                "const all = {}; for (const s of [localStorage, sessionStorage]) for (let i = 0; i < s.length; i++)"
                " all[s.key(i)] = s.getItem(s.key(i)); return all;")
        cookies = driver.get_cookies() + driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
        stored = storage()
        note(f"cookies: {sorted({c['name'] for c in cookies})}; storage keys: {sorted(stored)}")
        problems.expect(not any(TOKEN in value for value in stored.values()), "page storage holds the master token")

        # Which of the page's cookies and stored values work as credentials?
        live_bearer, live_cookies = [], []
        for value in stored.values():
            if isinstance(value, str) and len(value) >= 16 and server.request("GET", "/api/agents/jobs", auth=value).status == 200:
                live_bearer.append(value)
        for cookie in cookies:
            problems.expect(TOKEN not in cookie["value"], f"cookie {cookie['name']} holds the master token")
            header = f"{cookie['name']}={cookie['value']}"
            if server.request("GET", "/api/agents/jobs", auth=False, headers={"Cookie": header}).status == 200:
                live_cookies.append(header)
                problems.expect(False, f"cookie {cookie['name']} is a credential another port could replay")
        problems.expect(live_bearer or live_cookies, "the signed-in page holds no working credential at all")

        # Another local server, another port: what does the browser send it?
        driver.get(f"http://127.0.0.1:{catcher.server_address[1]}/harvest")
        WebDriverWait(driver, 10, 0.1).until(lambda d: CookieCatcher.received, "the other server got no request")
        sent = CookieCatcher.received[-1].get("Cookie", "")
        note(f"the browser sent the other port: Cookie: {sent[:20] + '…' if sent else '(none)'}")
        problems.expect(TOKEN not in sent, "the browser sent the master token to another port")
        if sent:
            replay = server.request("GET", "/api/agents/jobs", auth=False, headers={"Cookie": sent})
            problems.expect(replay.status == 401, f"the cookie another port received, replayed, answered {replay.status}")

        # Sign out: every credential the page held is dead on the server.
        driver.get(f"{server.url}/")
        WebDriverWait(driver, 20, 0.1).until(
            lambda d: d.execute_script("return document.querySelector('#connection')?.textContent") in ("live", "signed out"))
        buttons = [b for b in driver.find_elements(By.ID, "sign-out") if b.is_displayed()]
        if buttons:
            buttons[0].click()
            WebDriverWait(driver, 10, 0.1).until(
                lambda d: d.execute_script("return document.querySelector('#connection')?.textContent") == "signed out",
                "the page never said signed out")
        else:
            note("the dashboard has no Sign out control; sending DELETE /api/session from the page")
            driver.execute_async_script(
                "const done = arguments[0]; const s = localStorage.getItem('agentgate.session') || sessionStorage.getItem('agentgate.session');"
                "fetch('/api/session', {method: 'DELETE', headers: s ? {Authorization: 'Bearer ' + s} : {}}).finally(() => done());")
        for value in live_bearer:
            problems.expect(server.request("GET", "/api/agents/jobs", auth=value).status == 401, "the session still works after sign-out")
        for header in live_cookies:
            problems.expect(server.request("GET", "/api/agents/jobs", auth=False, headers={"Cookie": header}).status == 401,
                            "the cookie still works after sign-out")
    finally:
        driver.quit()
        catcher.shutdown()
        CookieCatcher.received.clear()
    problems.done()


# ---------------------------------------------------------------------------- §3 slow and greedy clients

def healthy(server, timeout=1.0):
    """Whether /healthz answers within `timeout` on a fresh connection."""
    try:
        return server.request("GET", "/healthz", auth=False, timeout=timeout).status == 200
    except OSError:
        return False


def read_http_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1)) if re.search(rb"(?i)content-length", head) else 0
    while len(rest) < length:
        rest += sock.recv(65536)
    return head, rest


@test
def slowloris_request_is_closed_at_its_deadline():
    problems = Problems()
    server = Server().start()
    auth_line = f"Authorization: Bearer {TOKEN}\r\n".encode()
    trickle = b"GET /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth_line + b"X-Slow: " + b"a" * 200
    results = {}

    def slow_client(name, proved):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            if proved:  # an authenticated request first: past any first-request rule, only the deadline applies
                sock.sendall(b"GET /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth_line + b"\r\n")
                read_http_response(sock)
            sock.setblocking(False)
            start = time.time()
            for byte in trickle:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    results[name] = (time.time() - start, b"(send failed)")
                    return
                until = time.time() + 2
                while time.time() < until:
                    ready, _, _ = select.select([sock], [], [], until - time.time())
                    if ready:
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            data = b""
                        results[name] = (time.time() - start, data[:40] or b"(closed)")
                        return  # answered (408) or closed: either ends the attack
                if time.time() - start > 14:
                    results[name] = (None, b"")
                    return
            results[name] = (None, b"")
        finally:
            sock.close()

    threads = [threading.Thread(target=slow_client, args=(name, proved), daemon=True)
               for name, proved in (("new connection", False), ("after an authenticated request", True))]
    for thread in threads:
        thread.start()
    misses = 0
    while any(thread.is_alive() for thread in threads):
        misses += not healthy(server)
        time.sleep(0.5)
    problems.expect(misses == 0, f"/healthz went unanswered {misses} times while requests trickled in")
    for name, (elapsed, data) in results.items():
        if problems.expect(elapsed is not None and elapsed <= 11.5,
                           f"{name}: a request trickled at one byte per 2 s was still open after {'%.1f' % elapsed if elapsed else '14+'} s"):
            note(f"{name}: closed {elapsed:.1f} s after its first byte with {data!r}")
    problems.done()


class RssWatch:
    """Samples a server's RSS every 50 ms; kills it past `kill_over` (an old binary can grow by
    gigabytes) and raises `over` past `stop_over` so the flood stops feeding it."""

    def __init__(self, server, stop_over=64 * MIB, kill_over=768 * MIB):
        self.server, self.baseline = server, server.rss()
        self.peak, self.over, self.killed, self.running = self.baseline, threading.Event(), False, True
        self.stop_over, self.kill_over = stop_over, kill_over
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                rss = self.server.rss()
            except (OSError, AttributeError):
                return
            self.peak = max(self.peak, rss)
            if rss - self.baseline > self.stop_over:
                self.over.set()
            if rss - self.baseline > self.kill_over and not self.killed:
                self.killed = True
                self.server.process.kill()
            time.sleep(0.05)

    def finish(self):
        self.running = False
        self.thread.join()
        return self.peak - self.baseline


def flood(sock, batch, seconds, watch, limit=64 * MIB):
    """Sends `batch` over and over for `seconds` (or `limit` bytes), never reading. Returns bytes sent."""
    sock.settimeout(0.5)
    sent, deadline = 0, time.time() + seconds
    # A partial send leaves the rest of the batch to go first: starting the batch over would
    # cut a frame or request in two, and the server would rightly close the connection as a
    # protocol error, which would end the flood instead of testing it.
    view, offset = memoryview(batch), 0
    while time.time() < deadline and sent < limit and not watch.over.is_set():
        try:
            count = sock.send(view[offset:])
        except socket.timeout:
            continue  # the server stopped reading: good, keep pushing until the time is up
        except OSError:
            break
        sent += count
        offset = (offset + count) % len(batch)
    return sent


def small_buffers_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return sock


def measure_flood(server, floods, seconds=6, answer_within=1.0):
    """Runs `floods` (functions of the watch) in threads while another client checks /healthz
    (each must be answered within `answer_within` s); returns (RSS growth, bytes sent by each
    flood, missed health checks)."""
    for _ in range(20):
        healthy(server)
    time.sleep(0.3)
    watch = RssWatch(server)
    sent = [0] * len(floods)

    def run(index, function):
        sent[index] = function(watch, seconds)
    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(floods)]
    for thread in threads:
        thread.start()
    misses = checks = 0
    slowest = 0.0
    while any(thread.is_alive() for thread in threads):
        checks += 1
        started = time.time()
        misses += not healthy(server, answer_within)
        slowest = max(slowest, time.time() - started)
        time.sleep(0.25)
    time.sleep(1.5)  # a server still working through what it read, and answers still queued, count too
    growth = watch.finish()
    if watch.killed:
        note(f"the server passed +{watch.kill_over // MIB} MiB and was killed")
    note(f"RSS {watch.baseline / MIB:.0f} MiB → peak +{growth / MIB:.1f} MiB; sent {', '.join(f'{s / MIB:.1f} MiB' for s in sent)}; "
         f"/healthz missed {misses} of {checks} (slowest {slowest:.2f} s)")
    return growth, sent, misses


@test
def pipelined_flood_keeps_rss_bounded():
    problems = Problems()
    server = Server().start()
    sockets = []

    def flooder(authenticated):
        def run(watch, seconds):
            sock = small_buffers_socket()
            sockets.append(sock)
            sock.connect(("127.0.0.1", server.port))
            request = b"GET /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            if authenticated:
                request += f"Authorization: Bearer {TOKEN}\r\n".encode()
            return flood(sock, (request + b"\r\n") * 400, seconds, watch)
        return run

    try:
        growth, sent, misses = measure_flood(server, [flooder(False), flooder(True)])
    finally:
        for sock in sockets:
            sock.close()
    problems.expect(growth <= 32 * MIB, f"pipelined requests grew the server by {growth / MIB:.0f} MiB (bound +32 MiB)")
    problems.expect(misses == 0, f"another client went unanswered {misses} times during the flood")
    problems.expect(sum(sent) >= 64 * 1024, f"only {sum(sent)} bytes could be sent: the flood proved nothing")
    problems.done()


def websocket_handshake(sock, token):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"the WebSocket upgrade was refused: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"the WebSocket upgrade was refused: {head[:200]!r}")


def masked_frame(opcode, payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


@test
def websocket_ping_flood_keeps_rss_bounded():
    problems = Problems()
    server = Server().start()
    sockets = []

    def flooder(watch, seconds):
        sock = small_buffers_socket()
        sockets.append(sock)
        sock.connect(("127.0.0.1", server.port))
        websocket_handshake(sock, TOKEN)
        # Empty pings: 6 bytes in, a 2-byte pong out each (the flood that grew the server by 417 MiB).
        return flood(sock, masked_frame(0x9, b"") * 10_000, seconds, watch)

    try:
        # The server reads at most 64 KiB of one connection per loop turn, so while it works
        # through the pings (until their pongs fill the queue bound) other clients keep their
        # turn: /healthz must still answer within a second.
        growth, sent, misses = measure_flood(server, [flooder, flooder], answer_within=1.0)
    finally:
        for sock in sockets:
            sock.close()
    problems.expect(growth <= 32 * MIB, f"a ping flood grew the server by {growth / MIB:.0f} MiB (bound +32 MiB)")
    problems.expect(misses == 0, f"another client went unanswered {misses} times during the flood")
    problems.expect(sum(sent) >= 64 * 1024, f"only {sum(sent)} bytes could be sent: the flood proved nothing")
    problems.done()


@test
def fifo_output_file_does_not_stall_the_server():
    problems = Problems()
    server = Server().start()
    # The fake codex swaps the `-o` output file the server will read for a FIFO, then ends.
    server.extra("codex", """
out=""; previous=""
for argument in "$@"; do
  case "$previous" in -o|--output-last-message) out="$argument";; esac
  case "$argument" in -o=*|--output-last-message=*) out="${argument#*=}";; esac
  previous="$argument"
done
if [ -n "$out" ]; then rm -f "$out"; mkfifo "$out"; echo "$out" > "$(dirname "$0")/fifo-path"; fi
""")
    reply = server.launch({"provider": "codex", "prompt": "hello"})
    if reply.status != 201:
        raise AssertionError(f"codex launch answered {reply}")
    job_id = reply.body["job"]["id"]
    fifo_file = os.path.join(server.bin, "fifo-path")
    try:
        deadline, stalls, job, ended_at = time.time() + 10, [], None, None
        while time.time() < deadline:
            for path in ("/healthz", "/api/agents/jobs"):
                started = time.time()
                try:
                    ok = server.request("GET", path, timeout=1).status == 200
                except OSError:
                    ok = False
                if not ok:
                    stalls.append(f"{path} unanswered after {time.time() - started:.1f} s")
            if stalls:
                break
            if job is None:
                current = server.job(job_id)
                if current["status"] in FINAL:
                    job, ended_at = current, time.time()
            elif time.time() - ended_at > 1.5:
                break
            time.sleep(0.1)
        problems.expect(os.path.exists(fifo_file), "the fake codex found no -o file to replace (the test proved nothing)")
        problems.expect(not stalls, f"while a FIFO sat at the output file, {stalls[:2]}")
        if problems.expect(job is not None, "the job never completed"):
            hook_error = job.get("hookError") or ""
            note(f"job {job['status']}, hookError: {hook_error!r}")
            problems.expect(re.search(r"(?i)regular|fifo", hook_error), f"hookError does not say why: {hook_error!r}")
    finally:
        if os.path.exists(fifo_file):  # let a server stuck opening the FIFO go, so it can stop
            try:
                with open(fifo_file) as file:
                    os.close(os.open(file.read().strip(), os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    problems.done()


# ---------------------------------------------------------------------------- §4 processes

GRANDCHILD = """
pidfile="{marks}/grandchild.$AGENTGATE_JOB_ID"
setsid /bin/sh -c 'echo $$ > "$0"; exec sleep 300' "$pidfile" </dev/null >/dev/null 2>&1 &
i=0; while [ ! -s "$pidfile" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
case "$(cat "$rec.stdin")" in *'"text":"hang'*) exec sleep 300 </dev/null >/dev/null 2>&1;; esac
"""


def setsid_grandchild(*options, env=None):
    problems = Problems()
    server = Server(*options, env=env)
    marks = os.path.join(server.temp, "marks")
    os.makedirs(marks)
    server.extra("claude", GRANDCHILD.format(marks=marks))
    server.start()
    time.sleep(0.1)
    note(next((line.strip() for line in server.output if "contained" in line), "the server did not say how it contains jobs"))
    for prompt, how in (("exit", "its job ended"), ("hang", "its job was killed")):
        reply = server.launch({"provider": "claude", "prompt": prompt})
        job_id = reply.body["job"]["id"]
        pid = read_pid(os.path.join(marks, f"grandchild.{job_id}"))
        if prompt == "hang":
            server.wait_job(job_id, {"running"})
            problems.expect(server.request("DELETE", f"/api/agents/jobs/{job_id}").status == 200, "DELETE did not answer 200")
        job = server.wait_job(job_id)
        gone = process_gone(pid, 3)
        note(f"{prompt}: job {job['status']}; setsid grandchild {pid} {'gone' if gone else 'still running'} 3 s later")
        problems.expect(gone, f"a setsid grandchild outlived {how} by 3 s")
    problems.done()


@test
def setsid_grandchild_dies_with_its_job():
    setsid_grandchild()


@test
def setsid_grandchild_dies_with_its_job_without_cgroup():
    setsid_grandchild("--no-cgroup", env={"AGENTGATE_NO_CGROUP": "1"})


@test
def inherited_descriptor_is_not_visible_in_the_agent():
    problems = Problems()
    secret = os.path.join(WORK, "inherited-secret")
    with open(secret, "w") as file:
        file.write("secret\n")
    inherited = os.open(secret, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        server = Server(pass_fds=(inherited,))
        gcc(f"""
            #include <dirent.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            int main(int argc, char **argv) {{
                if (argc > 1 && strcmp(argv[1], "--version") == 0) {{ puts("{VERSIONS['claude']}"); return 0; }}
                static char listing[65536]; size_t used = 0;
                DIR *dir = opendir("/proc/self/fd");
                int own = dirfd(dir);
                struct dirent *entry;
                while ((entry = readdir(dir)) != NULL) {{
                    if (entry->d_name[0] == '.' || atoi(entry->d_name) == own) continue;
                    char path[64], target[512] = "";
                    snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
                    ssize_t length = readlink(path, target, sizeof target - 1);
                    target[length > 0 ? length : 0] = 0;
                    used += snprintf(listing + used, sizeof listing - used, "%s %s\\n", entry->d_name, target);
                }}
                closedir(dir);
                char name[1024];
                const char *job = getenv("AGENTGATE_JOB_ID");
                snprintf(name, sizeof name, "{server.records}/fds.%s", job ? job : "nojob");
                FILE *out = fopen(name, "w");
                fputs(listing, out);
                fclose(out);
                /* Its prompt: one stream-json line (its stdin stays open for follow-ups). */
                char buffer[4096]; ssize_t got;
                while ((got = read(0, buffer, sizeof buffer)) > 0 && !memchr(buffer, '\\n', (size_t)got)) {{}}
                puts({json.dumps(CLAUDE_OUTPUT)});
                return 0;
            }}""", os.path.join(server.bin, "claude"))
        server.start()
    finally:
        os.close(inherited)
    reply = server.launch({"provider": "claude", "prompt": "hello"})
    job_id = reply.body["job"]["id"]
    server.wait_job(job_id)
    with open(os.path.join(server.records, f"fds.{job_id}")) as file:
        fds = dict(line.split(" ", 1) for line in file.read().splitlines())
    extra = {fd: target for fd, target in fds.items() if fd not in ("0", "1", "2")}
    note(f"the agent's descriptors: {fds}")
    problems.expect(not any(target == secret for target in extra.values()), "the descriptor the server inherited reached the agent")
    problems.expect(not extra, f"the agent got descriptors beyond 0, 1, 2: {extra}")
    problems.done()


def serve_outcome(arguments, env, timeout=8):
    """Starts serve and returns ('listening' | exit status, output). A server that listens is stopped."""
    process = subprocess.Popen([BINARY, "serve", "--port", "0", *arguments], env=env, cwd=WORK, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = []

    def read():
        for raw in iter(process.stdout.readline, b""):
            output.append(raw.decode(errors="replace"))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any("listening on" in line for line in output):
            process.terminate()
            process.wait(timeout=10)
            return "listening", "".join(output)
        if process.poll() is not None:
            reader.join(timeout=2)
            return process.returncode, "".join(output)
        time.sleep(0.05)
    process.kill()
    process.wait()
    return "hung", "".join(output)


def token_refused(arguments, env, names=None):
    outcome, output = serve_outcome(arguments, env)
    note(f"serve → {outcome}: {output.strip().splitlines()[:1]}")
    problems = Problems()
    problems.expect(outcome not in ("listening", "hung", 0), f"serve started anyway ({outcome})")
    if names:
        problems.expect(names in output, f"the message does not name {names}: {output.strip()[:300]!r}")
    problems.done()


def home_env(directory):
    return {"PATH": BASE_PATH, "HOME": directory, "LANG": "C.UTF-8"}


@test
def token_file_readable_by_others_is_refused():
    directory = tempfile.mkdtemp(dir=WORK)
    data = os.path.join(directory, "data")
    os.makedirs(data, mode=0o700)
    token_file = os.path.join(data, "token")
    with open(token_file, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    os.chmod(token_file, 0o644)
    token_refused(["--data-dir", data], home_env(directory), names=token_file)


@test
def token_file_symlink_is_refused():
    directory = tempfile.mkdtemp(dir=WORK)
    real = os.path.join(directory, "real-token")
    with open(real, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    os.chmod(real, 0o600)
    link = os.path.join(directory, "token-link")
    os.symlink(real, link)
    token_refused(["--data-dir", os.path.join(directory, "data"), "--token-file", link], home_env(directory), names=link)


@test
def short_token_is_refused():
    directory = tempfile.mkdtemp(dir=WORK)
    token_refused(["--data-dir", os.path.join(directory, "data")], home_env(directory) | {"AGENTGATE_TOKEN": "short-token-0123456789"})


@test
def existing_data_dir_is_made_private():
    directory = tempfile.mkdtemp(dir=WORK)
    data = os.path.join(directory, "data")
    os.makedirs(data)
    os.chmod(data, 0o755)
    outcome, output = serve_outcome(["--data-dir", data], home_env(directory) | {"AGENTGATE_TOKEN": TOKEN})
    mode = stat.S_IMODE(os.stat(data).st_mode)
    problems = Problems()
    problems.expect(outcome == "listening" and mode == 0o700 or outcome not in ("listening", "hung", 0),
                    f"serve {outcome} with a data dir left at mode {oct(mode)}")
    problems.done()


# ---------------------------------------------------------------------------- §4 the CLI

ESCAPES = "copy\u001b]52;c;ZXZpbA==\u0007 title\u001b]0;pwned\u0007 fake\rOVERWRITTEN csi\u009b31m bell\u0007 end"


def escape_server():
    server = Server().start()
    lines = [
        '{"type":"system","subtype":"init","session_id":"s-1","model":"fake","cwd":"/","tools":[],"permissionMode":"default"}',
        json.dumps({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": ESCAPES}]}, "session_id": "s-1"}),
        json.dumps({"type": "result", "subtype": "success", "is_error": False, "duration_ms": 1, "num_turns": 1,
                    "result": ESCAPES, "session_id": "s-1", "total_cost_usd": 0}),
    ]
    transcript = os.path.join(server.temp, "escapes.jsonl")
    with open(transcript, "w") as file:
        file.write("\n".join(lines) + "\n")
    server.extra("claude", f'/bin/cat "{transcript}"; exit 0\n')
    return server


def run_client(server, *arguments, terminal=False):
    command = [BINARY, "run", "claude", "hello", "--server", server.url, *arguments]
    env = {"PATH": BASE_PATH, "HOME": server.home, "AGENTGATE_TOKEN": TOKEN, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    if not terminal:
        result = subprocess.run(command, env=env, cwd=server.home, capture_output=True, timeout=30)
        return result.returncode, result.stdout + result.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, cwd=server.home, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output, deadline = b"", time.time() + 30
    while time.time() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    process.wait(timeout=10)
    return process.returncode, output


@test
def cli_escapes_control_characters_from_agent_output():
    problems = Problems()
    server = escape_server()
    status, output = run_client(server)
    note(f"through a pipe: exit {status}, {output[-200:]!r}")
    problems.expect(b"ZXZpbA==" in output, "the agent's text never reached the output (the test proved nothing)")
    for name, raw in (("ESC", b"\x1b"), ("BEL", b"\x07"), ("CR", b"\r"), ("CSI (U+009B)", "\u009b".encode()), ("0x9b", b"\x9b")):
        problems.expect(raw not in output, f"through a pipe the CLI printed a raw {name}")
    status, output = run_client(server, terminal=True)
    problems.expect(b"ZXZpbA==" in output, "on a terminal the agent's text never reached the output")
    for name, raw in (("OSC (ESC ])", b"\x1b]"), ("BEL", b"\x07"), ("CSI (U+009B)", "\u009b".encode()), ("CR before OVERWRITTEN", b"\rOVERWRITTEN")):
        problems.expect(raw not in output, f"on a terminal the CLI printed a raw {name}")
    status, output = run_client(server, "--raw")
    problems.expect(b"\x1b]52;c;ZXZpbA==\x07" in output, f"--raw did not keep the bytes as they are (exit {status}: {output[-200:]!r})")
    problems.done()


# ---------------------------------------------------------------------------- HTTP framing

def raw_exchange(port, data, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and re.search(rb"(?i)connection: close", received) is None and len(received) > 12:
                    head, _, body = received.partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                    if length and len(body) >= int(length.group(1)):
                        break
        except socket.timeout:
            pass
        return received


@test
def json_routes_and_http_framing():
    problems = Problems()
    server = Server().start()
    launch = json.dumps({"provider": "claude", "prompt": "hello"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        reply = server.request("POST", "/api/agents/jobs", raw_body=launch, headers=headers)
        problems.expect(reply.status == 415, f"a JSON body sent as {content_type or 'no Content-Type'} answered {reply}")
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    duplicate = raw_exchange(server.port, b"GET /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n" + auth
                             + b"Connection: close\r\n\r\n")
    problems.expect(duplicate.startswith(b"HTTP/1.1 400"), f"two Host headers answered {duplicate[:60]!r}")
    duplicate = raw_exchange(server.port, b"GET /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n" + auth
                             + b"Connection: close\r\n\r\n")
    problems.expect(duplicate.startswith(b"HTTP/1.1 400"), f"two identical Host headers answered {duplicate[:60]!r}")
    size = len(launch)
    for chunk_size in (f"+{size:x}", f"0x{size:x}", "-1", f" {size:x}"):
        answer = raw_exchange(server.port, b"POST /api/agents/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
                              + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                              + chunk_size.encode() + b"\r\n" + launch + b"\r\n0\r\n\r\n")
        problems.expect(answer.startswith(b"HTTP/1.1 400"), f"chunk size {chunk_size!r} answered {answer[:60]!r}")
    # X-Content-Type-Options: nosniff on every response.
    answers = {
        "GET / (dashboard)": server.request("GET", "/", auth=False),
        "GET /healthz": server.request("GET", "/healthz", auth=False),
        "GET /api/agents/jobs": server.request("GET", "/api/agents/jobs"),
        "401": server.request("GET", "/api/agents/jobs", auth=False),
        "404": server.request("GET", "/api/agents/jobs/ffffffffffffffff"),
        "400 launch": server.launch({"provider": "nope", "prompt": "x"}),
        "415": server.request("POST", "/api/agents/jobs", raw_body=launch, headers={"Content-Type": "text/plain"}),
        "GET /metrics": server.request("GET", "/metrics"),
        "403 Host": server.request("GET", "/api/agents/jobs", headers={"Host": "evil.example"}),
    }
    for name, reply in answers.items():
        problems.expect(reply.headers.get("X-Content-Type-Options") == "nosniff", f"{name} ({reply.status}) has no X-Content-Type-Options: nosniff")
    bad = raw_exchange(server.port, b"HELLO THERE\r\n\r\n")
    problems.expect(b"x-content-type-options: nosniff" in bad.lower(), f"a 400 for a malformed request has no nosniff: {bad[:120]!r}")
    problems.done()


# ---------------------------------------------------------------------------- runner

def cleanup():
    for server in SERVERS:
        try:
            server.cleanup()
        except Exception as error:  # noqa: BLE001 - keep cleaning up the rest
            print(f"    cleanup: {error}")
    SERVERS.clear()
    for pid in list(STRAY_PIDS):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                if b"sleep" in file.read():
                    os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        STRAY_PIDS.discard(pid)


def main(selected):
    if not os.access(BINARY, os.X_OK):
        print(f"no agentgate binary at {BINARY}")
        return 2
    print(f"agentgate security suite against {BINARY}", flush=True)
    passed = failed = 0
    tests = [t for t in TESTS if not selected or any(s in t.__name__ for s in selected)]
    for function in tests:
        started = time.time()
        try:
            function()
            passed += 1
            print(f"PASS {function.__name__} ({time.time() - started:.1f} s)", flush=True)
        except Skip as reason:
            print(f"SKIP {function.__name__}: {reason}", flush=True)
        except AssertionError as error:
            failed += 1
            print(f"FAIL {function.__name__} ({time.time() - started:.1f} s): {error}", flush=True)
        except Exception:  # noqa: BLE001 - an error in a test is a failure, reported with its trace
            failed += 1
            print(f"FAIL {function.__name__} ({time.time() - started:.1f} s): error\n{traceback.format_exc()}", flush=True)
        finally:
            cleanup()
    shutil.rmtree(WORK, ignore_errors=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
