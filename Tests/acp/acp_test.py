"""A real ACP agent (scripted_agent.py, built with the PyPI package `agent-client-protocol`)
run by `agentgate serve` as the provider opencode-acp: a fake `opencode` on PATH whose `acp`
mode is that agent. Each test follows the job with the real websocat and asserts the lines a
user sees, the files the agent wrote, and the job's status and result: a prompt through the
whole protocol, a permission answered by each policy, a follow-up in the same session, a kill
that cancels the turn, and a session loaded again by a later job.

    python acp_test.py             # every test
    python acp_test.py -k cancel   # tests whose name contains cancel
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from suite_runner import collect_tests, run_tests  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BINARY = os.environ.get("AGENTGATE_BIN", os.path.join(ROOT, ".build", "debug", "agentgate"))
AGENT = os.path.join(HERE, "scripted_agent.py")
TOKEN = "acp0123456789abcdef0123456789abcdef"
WEBSOCAT = shutil.which("websocat") or os.path.join(os.path.dirname(sys.executable), "websocat")


class Serve:
    """`agentgate serve` with a fake `opencode` whose `acp` mode is the real ACP agent."""

    def __init__(self, *extra):
        self.root = tempfile.mkdtemp(prefix="agentgate-acp-")
        self.work = os.path.join(self.root, "work")
        self.bin = os.path.join(self.root, "bin")
        os.makedirs(self.work)
        os.makedirs(self.bin)
        with open(os.path.join(self.bin, "opencode"), "w") as script:
            script.write(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "1.0.150"; exit 0; fi
if [ "$1" = "acp" ]; then
  [ "$2" = "--help" ] && {{ echo "Start an ACP server"; exit 0; }}
  exec '{sys.executable}' '{AGENT}'
fi
echo "only acp here" >&2; exit 2
""")
        os.chmod(os.path.join(self.bin, "opencode"), 0o755)
        self.env = {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": self.root, "AGENTGATE_TOKEN": TOKEN}
        self.process = subprocess.Popen(
            [BINARY, "serve", "--port", "0", "--data-dir", os.path.join(self.root, "data"), "--workspace", self.work,
             "--kill-grace", "2", *extra],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"serve did not start: {line!r}"
        self.url = match.group(1)

    def api(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def launch(self, prompt, **fields):
        return self.api("POST", "/api/agents/jobs", {"provider": "opencode-acp", "prompt": prompt, "cwd": self.work, **fields})["job"]["id"]

    def job(self, job):
        return self.api("GET", f"/api/agents/jobs/{job}")["job"]

    def lines(self, job):
        """The job's `format=text` stream through the real websocat, to its end."""
        result = subprocess.run([WEBSOCAT, "-n", f"{self.url.replace('http', 'ws')}/ws/jobs/{job}?format=text",
                                 "-H", f"Authorization: Bearer {TOKEN}"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    def wait_for_line(self, job, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.api("GET", f"/api/agents/jobs/{job}/events?limit=10000")["events"]
            if any(text in event.get("text", "") for event in events if event["type"] == "job:log"):
                return
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in job {job}")

    def close(self):
        try:
            self.api("DELETE", "/api/agents/jobs")
        except OSError:
            pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def agent_lines(lines):
    return [re.sub(r"sess-\d+-\d+", "S", line) for line in lines if not line.startswith("[agentgate] ")]


def expect(got, want):
    assert got == want, "lines differ:\n" + "\n".join(
        f"  {'=' if i < len(got) and i < len(want) and got[i] == want[i] else '≠'} got {got[i] if i < len(got) else '—'!r}\n"
        f"      want {want[i] if i < len(want) else '—'!r}" for i in range(max(len(got), len(want))))


PLAN = ["plan:", "  ✓ Read the request", "  ▸ Answer it", "Thinking about it."]


def test_a_prompt_through_the_whole_protocol_with_permission_allowed():
    server = Serve("--agent-permissions", "allow")
    try:
        capabilities = server.api("GET", "/api/agents/capabilities")
        assert "opencode-acp" in capabilities["available"], capabilities["available"]
        job = server.launch("please edit the notes")
        lines = server.lines(job)
        assert lines[-1].endswith(" done (exit 0)"), lines[-3:]
        expect(agent_lines(lines), [
            "ACP agent · protocol 1", "session S", *PLAN, "Looking at: please edit the notes", "→ Write notes.txt",
            "? permission for Write notes.txt: Allow once / Reject", "permission for Write notes.txt: Allow once",
            "← Write notes.txt: wrote notes.txt", "Done.", "✓ done · 1 turn",
        ])
        assert open(os.path.join(server.work, "notes.txt")).read() == "noted\n"
        final = server.job(job)
        assert final["status"] == "done" and final["result"]["stopReason"] == "end_turn", final
        assert final["result"]["toolCalls"] == [{"id": "call-1", "title": "Write notes.txt", "kind": "edit", "status": "completed"}], final["result"]
        assert re.fullmatch(r"sess-\d+-1", final["sessionId"]), final["sessionId"]
        assert final["command"][1:4] == ["acp-client", "--permissions=allow", "--"] and final["command"][-1] == "acp", final["command"]
    finally:
        server.close()


def test_permission_is_denied_by_default():
    server = Serve()
    try:
        job = server.launch("please edit the notes")
        lines = agent_lines(server.lines(job))
        assert "permission for Write notes.txt: Reject" in lines, lines
        assert "✗ Write notes.txt: not allowed (selected)" in lines, lines
        assert not os.path.exists(os.path.join(server.work, "notes.txt")), "the write was denied but happened"
        assert server.job(job)["status"] == "done"
    finally:
        server.close()


def test_a_follow_up_goes_to_the_same_session():
    server = Serve()
    try:
        job = server.launch("slow 30")
        server.wait_for_line(job, "Looking at: slow 30")
        sent = subprocess.run([BINARY, "send", job, "and another thing", "--server", server.url], env=server.env,
                              capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        lines = agent_lines(server.lines(job))
        assert "› and another thing" in lines, lines
        assert lines.index("› and another thing") < lines.index("Looking at: and another thing"), lines
        assert lines[-1] == "✓ done · 2 turns", lines
        final = server.job(job)
        assert final["status"] == "done" and final["messages"] == 1 and final["result"]["numTurns"] == 2, final
    finally:
        server.close()


def test_a_kill_cancels_the_turn_before_any_signal():
    server = Serve()
    try:
        job = server.launch("slow")
        server.wait_for_line(job, "Looking at: slow")
        time.sleep(0.5)  # mid-answer (its steps stream as the partial line)
        started = time.monotonic()
        server.api("DELETE", f"/api/agents/jobs/{job}")
        lines = server.lines(job)
        took = time.monotonic() - started
        assert "cancel sent to the agent" in lines and "⊘ cancelled · 1 turn" in lines, lines
        assert not any("SIGTERM sent" in line for line in lines), lines
        assert took < 3, f"the agent's cancel took {took:.1f} s: SIGTERM came first"
        final = server.job(job)
        assert final["status"] == "killed" and final["result"]["stopReason"] == "cancelled", final
    finally:
        server.close()


def test_a_later_job_loads_the_session_and_sees_its_turns():
    server = Serve()
    try:
        first = server.launch("remember the number 7")
        server.lines(first)
        session = server.job(first)["sessionId"]
        second = server.launch("what was it?", resumeSession=session)
        lines = agent_lines(server.lines(second))
        assert lines[:4] == ["ACP agent · protocol 1", "› remember the number 7", "Looking at: remember the number 7",
                             "session S loaded: its earlier turns are above"], lines
        assert "Looking at: what was it?" in lines and lines[-1] == "✓ done · 1 turn", lines
        assert server.job(second)["sessionId"] == session
    finally:
        server.close()


def test_a_finished_job_is_continued_in_its_session():
    """A follow-up to the finished job: the client loads its session (session/load) as the
    job's next run, whose log does not show the replayed turns again; seq goes on."""
    server = Serve()
    try:
        job = server.launch("remember the number 7")
        server.lines(job)
        first = server.job(job)
        assert first["acceptsMessages"] and first["sessionId"], first
        sent = subprocess.run([BINARY, "send", job, "what was it?", "--server", server.url], env=server.env,
                              capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0 and "resumes as the job's next run" in sent.stdout, (sent.stdout, sent.stderr)
        deadline = time.monotonic() + 30
        while not (server.job(job)["status"] == "done" and server.job(job)["messages"] == 1):
            assert time.monotonic() < deadline, server.job(job)
            time.sleep(0.1)
        lines = agent_lines(server.lines(job))
        later = lines[lines.index("› what was it?"):]
        assert later[:2] == ["› what was it?", "ACP agent · protocol 1"], later
        assert "session S resumed" in later and "Looking at: what was it?" in later and later[-1] == "✓ done · 1 turn", later
        # The replayed turns (the first prompt, its answer) are not shown a second time.
        assert "› remember the number 7" not in lines and lines.count("Looking at: remember the number 7") == 1, lines
        final = server.job(job)
        assert final["sessionId"] == first["sessionId"] and f"--resume={first['sessionId']}" in final["command"], final
        events = server.api("GET", f"/api/agents/jobs/{job}/events?limit=10000")["events"]
        assert [e["seq"] for e in events] == list(range(1, final["lastSeq"] + 1))
    finally:
        server.close()


def permission_events(server, job):
    return [e for e in server.api("GET", f"/api/agents/jobs/{job}/events?limit=10000")["events"] if e["type"] == "job:permission"]


def wait_for_question(server, job, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_questions = [e for e in permission_events(server, job) if e["answer"] is None]
        if open_questions:
            return open_questions[0]
        time.sleep(0.05)
    raise AssertionError(f"job {job} asked no question")


def answer(server, job, *arguments):
    return subprocess.run([BINARY, "answer", job, *arguments, "--server", server.url], env=server.env,
                          capture_output=True, text=True, timeout=30)


def test_ask_the_question_goes_to_a_person_who_answers_it():
    server = Serve("--agent-permissions", "ask", "--permission-timeout", "60")
    try:
        job = server.launch("please edit the notes")
        question = wait_for_question(server, job)
        assert question["title"] == "Write notes.txt", question
        assert [o["optionId"] for o in question["options"]] == ["allow", "reject"], question
        assert question["expiresAt"] > time.time() * 1000 + 50_000, question
        assert not os.path.exists(os.path.join(server.work, "notes.txt")), "written before anyone answered"
        wrong = answer(server, job, question["request"], "maybe")
        assert wrong.returncode == 2 and "no option maybe" in wrong.stderr, (wrong.returncode, wrong.stderr)
        right = answer(server, job, question["request"], "allow")
        assert right.returncode == 0, right.stderr
        lines = agent_lines(server.lines(job))
        assert "permission for Write notes.txt: Allow once" in lines and "← Write notes.txt: wrote notes.txt" in lines, lines
        assert open(os.path.join(server.work, "notes.txt")).read() == "noted\n"
        assert [e["answer"] for e in permission_events(server, job)] == [None, "allow"]
        again = answer(server, job, question["request"], "allow")
        assert again.returncode == 7, (again.returncode, again.stderr)
    finally:
        server.close()


def test_ask_unanswered_gets_the_operators_default_in_time():
    server = Serve("--agent-permissions", "ask", "--permission-timeout", "1", "--permission-default", "deny")
    try:
        job = server.launch("please edit the notes")
        asked = wait_for_question(server, job)
        lines = agent_lines(server.lines(job))
        assert "permission for Write notes.txt: Reject" in lines, lines
        assert not os.path.exists(os.path.join(server.work, "notes.txt")), "the default was deny"
        answered = permission_events(server, job)[-1]
        assert answered["answer"] == "reject" and answered["time"] - asked["time"] >= 900, (asked, answered)
    finally:
        server.close()


def main():
    run_tests(collect_tests(globals()))


if __name__ == "__main__":
    main()
