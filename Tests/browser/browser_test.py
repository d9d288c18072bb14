"""The dashboard in a real browser: Debian's chromium driven by selenium, against a live
`agentgate serve` with fake agents on PATH. Screenshots of each step go to
Tests/browser/screenshots/ (git-ignored). Run with `Tests/browser/run`.

The fake `claude` reads its prompt from stdin (one stream-json user message) and acts on it:
  "slow [N]"     replays a real transcript slowly, then N numbered steps (default 20)
  "lines N"      prints N lines at once
  "hang"         runs until killed
  "spend"        reports a cost twice ($0.02, then $0.03 in all), then runs until killed
  "edit"         changes files in its working directory (a worktree job's change)
  "converse"     works 10 s on its first turn, then answers each follow-up message ("you said: …");
                 run with --resume=s1 it answers "resumed: …" (a finished job continued)
  anything else  replays the transcript at once
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from e2e import FIXTURES, TOKEN, Server  # noqa: E402

SHOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "screenshots")
TRANSCRIPT = os.path.join(FIXTURES, "claude-stream-json-bash-ls-assembled.jsonl")

FAKE_CLAUDE = f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.1.12 (Claude Code)"; exit 0; fi
if [ "$1" = "acp" ]; then exit 2; fi
IFS= read -r message
prompt=$(printf '%s' "$message" | sed 's/.*"text":"\\([^"]*\\)".*/\\1/')
case "$*" in *--resume=s1*)
  printf '%s\n' '{{"type":"system","subtype":"init","session_id":"s1","model":"fake"}}'
  echo "resumed: $prompt"
  printf '%s\n' '{{"type":"result","subtype":"success","is_error":false,"result":"third","num_turns":1,"session_id":"s1"}}'
  exit 0;;
esac
case "$prompt" in
  slow*)
    steps=${{prompt#slow}}; steps=${{steps# }}; [ -n "$steps" ] || steps=20
    while IFS= read -r line; do
      case "$line" in *'"type":"result"'*) result="$line"; continue;; esac
      printf '%s\\n' "$line"; sleep 0.1
    done < '{TRANSCRIPT}'
    i=1; while [ $i -le $steps ]; do
      echo "step $i of $steps: still working"; [ $((i % 7)) -eq 0 ] && echo "warning: step $i took a while" >&2
      sleep 0.1; i=$((i+1))
    done
    printf '%s\\n' "$result";;
  lines*) seq 1 ${{prompt#lines }} | sed 's/^/output line /';;
  hang*) exec sleep 300;;
  spend*)
    for cost in 0.02 0.03; do
      printf '%s\\n' '{{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1,"total_cost_usd":'$cost',"session_id":"s1"}}'
      sleep 1.5
    done
    exec sleep 300;;
  edit*)
    echo "changed by the agent" >> a.txt
    printf 'new file\n' > new.txt
    echo '<img src=x onerror="window.pwned=1">' > markup.txt
    seq 1 700 > big.txt
    echo "edited 4 files";;
  converse*)
    printf '%s\n' '{{"type":"system","subtype":"init","session_id":"s1","model":"fake"}}'
    i=1; while [ $i -le 10 ]; do echo "working on it ($i)"; sleep 1; i=$((i+1)); done
    printf '%s\n' '{{"type":"result","subtype":"success","is_error":false,"result":"first","num_turns":1,"session_id":"s1"}}'
    while IFS= read -r message; do
      text=$(printf '%s' "$message" | sed 's/.*"text":"\\([^"]*\\)".*/\\1/')
      printf '%s\n' '{{"type":"system","subtype":"init","session_id":"s1","model":"fake"}}'
      echo "you said: $text"
      printf '%s\n' '{{"type":"result","subtype":"success","is_error":false,"result":"second","num_turns":1,"session_id":"s1"}}'
    done;;
  stubborn*) trap '' TERM; echo 'ignoring SIGTERM'; sleep 300 & wait;;
  stream*)
    printf '%s\\n' '{{"type":"stream_event","api_message_id":"m1","event":{{"type":"content_block_start","index":0,"content_block":{{"type":"text","text":""}}}}}}'
    for word in Writing the answer slowly; do
      printf '{{"type":"stream_event","api_message_id":"m1","event":{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"%s "}}}}}}\\n' "$word"
      sleep 0.4
    done
    sleep 1.5
    printf '%s\\n' '{{"type":"assistant","message":{{"id":"m1","content":[{{"type":"text","text":"Writing the answer slowly"}}]}}}}';;
  *) cat '{TRANSCRIPT}';;
esac
"""


# An ACP agent in a few lines of shell, for the permission question: the client's requests
# are numbered 1 (initialize), 2 (session/new), 3 (the prompt); it asks to write a file and
# ends its turn once answered.
FAKE_OPENCODE = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "1.0.150"; exit 0; fi
[ "$1" = "acp" ] || exit 2
[ "$2" = "--help" ] && { echo "Start an ACP server"; exit 0; }
read -r line; echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":1}}'
read -r line; echo '{"jsonrpc":"2.0","id":2,"result":{"sessionId":"s1"}}'
read -r line
echo '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"tool_call","toolCallId":"c1","title":"Write notes.txt","kind":"edit","status":"pending"}}}'
echo '{"jsonrpc":"2.0","id":0,"method":"session/request_permission","params":{"sessionId":"s1","toolCall":{"toolCallId":"c1","title":"Write notes.txt"},"options":[{"optionId":"allow","name":"Allow once","kind":"allow_once"},{"optionId":"reject","name":"Reject","kind":"reject_once"}]}}'
read -r answer
case "$answer" in *'"optionId":"allow"'*) status=completed;; *) status=failed;; esac
echo '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"tool_call_update","toolCallId":"c1","status":"'$status'"}}}'
echo '{"jsonrpc":"2.0","id":3,"result":{"stopReason":"end_turn"}}'
while read -r line; do :; done
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DashboardServer(Server):
    """A server on a fixed port (so a restart keeps the page's address)."""

    def __init__(self):
        super().__init__()
        self.fixed_port = free_port()
        with open(os.path.join(self.bin_dir, "claude"), "w") as script:
            script.write(FAKE_CLAUDE)
        with open(os.path.join(self.bin_dir, "opencode"), "w") as script:
            script.write(FAKE_OPENCODE)

    def start(self):
        env = {"PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": self.temp, "AGENTGATE_TOKEN": TOKEN}
        import subprocess
        import re
        self.process = subprocess.Popen(
            [os.environ.get("AGENTGATE_BIN", os.path.join(os.path.dirname(SHOTS), "..", "..", ".build", "debug", "agentgate")),
             "serve", "--port", str(self.fixed_port), "--data-dir", self.data_dir, "--kill-grace", "1",
             "--agent-permissions", "ask", "--permission-timeout", "120"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if not re.search(r"listening on", line):
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = self.fixed_port
        return self


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(SHOTS, exist_ok=True)
        cls.server = DashboardServer().start()
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900",
                         "--disable-gpu", "--force-color-profile=srgb"):
            options.add_argument(argument)
        cls.downloads = os.path.join(cls.server.temp, "downloads")
        os.makedirs(cls.downloads)
        options.add_experimental_option("prefs", {"download.default_directory": cls.downloads, "download.prompt_for_download": False})
        cls.driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
        cls.driver.set_script_timeout(30)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.server.cleanup()

    # helpers

    def wait(self, condition, timeout=20, message=""):
        # A condition that reads the DOM may hold an element the page has just replaced.
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
                             ).until(lambda driver: condition(), message)

    def shot(self, name):
        path = os.path.join(SHOTS, f"{name}.png")
        self.driver.save_screenshot(path)
        return path

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def text(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def selected_status(self):
        return self.js("return document.querySelector('#job-status .status')?.textContent ?? ''")

    def log_lines(self):
        return self.js("return window.dashboard.log.lines.map((line) => line.text)")

    def open_dashboard(self):
        self.driver.get(f"http://127.0.0.1:{self.server.port}/#token={TOKEN}")
        self.wait(lambda: self.text("#connection") == "live", message="the WebSocket never went live")

    def launch(self, prompt, label=""):
        prompt_box = self.driver.find_element(By.ID, "launch-prompt")
        prompt_box.clear()
        prompt_box.send_keys(prompt)
        label_box = self.driver.find_element(By.ID, "launch-label")
        label_box.clear()
        label_box.send_keys(label)
        before = self.driver.current_url
        self.driver.find_element(By.ID, "launch-submit").click()
        self.wait(lambda: "job=" in self.driver.current_url and self.driver.current_url != before,
                  message="no job opened after launch")
        return self.driver.current_url.split("job=")[1][:16]

    def server_log_texts(self, job_id):
        """The job's lines as the page should show them, from the REST history."""
        status, reply, _ = self.server.request("GET", f"/api/agents/jobs/{job_id}/events?limit=10000")
        return [event for event in reply["events"] if event["type"] != "job:event"]

    # the story, in order

    def test_the_dashboard_story(self):
        driver = self.driver
        self.open_dashboard()
        self.assertNotIn("token", driver.current_url)  # traded for a session, gone from the address bar
        # No cookie carries a credential; the page keeps a session of its own, never the token.
        session = self.js("return localStorage.getItem('agentgate.session')")
        self.assertRegex(session, "^[0-9a-f]{64}$")
        self.assertNotEqual(session, TOKEN)
        cookies = driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
        self.assertFalse([c for c in cookies if TOKEN in c["value"] or session in c["value"]], cookies)
        self.assertNotIn(TOKEN, self.js("return JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"))
        # The four CLIs, and opencode's ACP mode.
        self.wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#agents li.available")) == 5)
        self.assertIn("2.1.12 (Claude Code)", self.text("#agents"))
        self.shot("01-dashboard")

        # The server's validation error appears beside the field it concerns.
        driver.find_element(By.ID, "launch-cwd").send_keys("/no/such/dir")
        driver.find_element(By.ID, "launch-prompt").send_keys("x")
        driver.find_element(By.ID, "launch-submit").click()
        self.wait(lambda: self.text("#error-cwd") != "")
        self.assertEqual(driver.find_element(By.ID, "launch-cwd").get_attribute("aria-invalid"), "true")
        self.shot("02-validation-error")
        driver.find_element(By.ID, "launch-cwd").clear()

        # Launch, watch lines stream, open a second window on the same job mid-stream.
        job_id = self.launch("slow 40", label="list files")
        self.wait(lambda: len(self.log_lines()) >= 4 and self.selected_status() == "running")
        self.assertTrue(any(line.startswith("→ Bash:") for line in self.log_lines()))
        self.shot("03-streaming")
        first_window = driver.current_window_handle
        driver.switch_to.new_window("window")
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={job_id}")
        self.wait(lambda: self.selected_status() == "done", timeout=30)
        second = self.log_lines()
        self.shot("04-second-window-done")
        driver.close()
        driver.switch_to.window(first_window)
        self.wait(lambda: self.selected_status() == "done")
        self.assertEqual(self.log_lines(), second)
        self.assertEqual(len(second), len(self.server_log_texts(job_id)))
        self.assertTrue(driver.find_element(By.ID, "job-result").is_displayed())
        self.assertIn("$", self.text("#job-meta"))  # cost from the agent's result
        self.shot("05-done-with-result")

        # Copy all and download: the whole log, as the server recorded it.
        driver.find_element(By.ID, "log-copy").click()
        self.wait(lambda: self.text("#log-copy") == "Copied")
        driver.find_element(By.ID, "log-download").click()
        downloaded = os.path.join(self.downloads, f"agentgate-job-{job_id}.log")
        self.wait(lambda: os.path.exists(downloaded) and os.path.getsize(downloaded) > 0)
        with open(downloaded) as file:
            self.assertEqual(file.read().splitlines(), second)

        # Search within the log.
        search = driver.find_element(By.ID, "log-search")
        search.send_keys("still working")
        self.wait(lambda: self.text("#log-matches") == "1 of 40")
        self.shot("06-search")
        search.clear()
        search.send_keys(" ")
        search.clear()

        # The job list and the job view show each job's prompt and start time.
        row = driver.find_element(By.CSS_SELECTOR, f'#jobs tr[data-job="{job_id}"]')
        self.assertEqual(row.find_element(By.CSS_SELECTOR, "td.prompt").text, "slow 40")
        self.assertRegex(row.find_element(By.CSS_SELECTOR, "td.started").text, r"\d\d:\d\d:\d\d")
        self.assertEqual(self.text("#job-prompt"), "slow 40")
        self.assertIn("started ", self.text("#job-meta"))

        # Text being written shows live, as an in-progress line under the log, until the
        # finished line replaces it.
        self.launch("stream")
        self.wait(lambda: "Writing the" in self.js("return document.querySelector('#log-partial').hidden ? '' : document.querySelector('#log-partial').textContent"))
        self.assertNotIn("Writing the answer slowly", self.log_lines())
        self.shot("06b-live-text")
        self.wait(lambda: "Writing the answer slowly" in self.log_lines())
        self.assertTrue(self.js("return document.querySelector('#log-partial').hidden"))

        # Kill a running job that ignores SIGTERM: it shows `stopping` for the grace period
        # (1 s here), then `killed (SIGKILL)`, with the reason in its result.
        hung = self.launch("stubborn")
        self.wait(lambda: self.selected_status() == "running" and "ignoring SIGTERM" in self.log_lines())
        driver.find_element(By.ID, "job-kill").click()
        self.wait(lambda: self.selected_status() == "stopping", timeout=5)
        self.wait(lambda: self.selected_status() == "killed")
        self.assertEqual(self.server.job(hung)["status"], "killed")
        self.assertIn("[agentgate] job killed (SIGKILL)", self.log_lines())
        self.assertIn("killed on request (SIGKILL after the grace period)", self.text("#result-text"))
        self.shot("07-killed")

        # Stop the server mid-job (a crash), start it again: the job worked on under its
        # supervisor meanwhile; the page reconnects by itself, resumes from the last seq it
        # saw, and shows the job re-attached; no line lost, none twice.
        long_job = self.launch("slow 600", label="outlives a restart")
        self.wait(lambda: len(self.log_lines()) >= 12)
        self.server.stop(signal.SIGKILL)
        self.wait(lambda: driver.find_element(By.ID, "connection").get_attribute("data-state") == "reconnecting")
        self.shot("08-server-gone")
        time.sleep(1)  # the agent writes on with no server
        self.server.start()
        self.wait(lambda: self.text("#connection") == "live", timeout=30)
        self.wait(lambda: "re-attached after a server restart" in self.text("#job-meta"))
        self.assertEqual(self.selected_status(), "running")
        self.shot("09-re-attached-after-restart")
        self.assertEqual(self.server.job(long_job)["reattachCount"], 1)
        self.assertEqual(self.server.request("DELETE", f"/api/agents/jobs/{long_job}")[0], 200)
        self.wait(lambda: self.selected_status() == "killed")
        self.wait(lambda: self.log_lines()[-1].startswith("[agentgate] job killed"), message=f"{self.log_lines()[-3:]}")
        steps = [int(line.split()[1]) for line in self.log_lines() if line.startswith("step ")]
        stored = [event["text"] for event in self.server_log_texts(long_job) if event.get("text", "").startswith("step ")]
        self.assertGreater(len(steps), 12)
        self.assertEqual(steps, list(range(1, len(steps) + 1)))  # none lost, none twice
        self.assertEqual(len(steps), len(stored))

        # A job with 100,000 lines stays usable: only the rows in view are in the DOM.
        big = self.launch("lines 100000", label="100k lines")
        self.wait(lambda: self.selected_status() == "done" and len(self.log_lines()) == 100_002, timeout=60)
        self.assertEqual(self.text("#log-count"), "100,002 lines")
        rows = len(driver.find_elements(By.CSS_SELECTOR, "#log .line"))
        self.assertLess(rows, 300)
        self.js("document.querySelector('#log').scrollTop = 0")
        self.wait(lambda: self.js("return document.querySelector('#log .line[data-index=\"2\"]')?.textContent") == "output line 1")
        self.js("const log = document.querySelector('#log'); log.scrollTop = log.scrollHeight / 2")
        self.wait(lambda: self.js("return document.querySelector('#log .line[data-index=\"50001\"]')?.textContent") == "output line 50000")
        self.assertFalse(driver.find_element(By.ID, "log-follow").get_attribute("hidden"))  # scrolled up: not following
        search = driver.find_element(By.ID, "log-search")
        search.send_keys("output line 77777")
        self.wait(lambda: self.text("#log-matches") == "1 of 1")
        self.wait(lambda: self.js("return document.querySelector('#log .line.match-current')?.textContent") == "output line 77777")
        self.shot("10-hundred-thousand-lines")
        self.assertEqual(self.server.job(big)["status"], "done")

        # Filter by status, then kill all behind a confirmation.
        Select(driver.find_element(By.ID, "status-filter")).select_by_visible_text("killed")
        self.wait(lambda: [row.get_attribute("data-status") for row in driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")] == ["killed"] * 2)
        Select(driver.find_element(By.ID, "status-filter")).select_by_visible_text("all")
        others = [self.launch("hang", label=f"worker {n}") for n in range(3)]
        self.wait(lambda: all(self.server.job(job)["status"] == "running" for job in others))
        # A keyboard user's focus on one job's Kill button survives another job ending.
        kill_first = f"#jobs button[aria-label='Kill job {others[0]}']"
        self.wait(lambda: self.js(f"return document.querySelector(\"{kill_first}\") !== null"))
        self.js(f"document.querySelector(\"{kill_first}\").focus()")
        self.assertEqual(self.server.request("DELETE", f"/api/agents/jobs/{others[2]}")[0], 200)
        self.wait(lambda: driver.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{others[2]}']").get_attribute("data-status") == "killed")
        self.assertEqual(driver.switch_to.active_element.get_attribute("aria-label"), f"Kill job {others[0]}")
        self.wait(lambda: driver.find_element(By.ID, "kill-all").is_enabled())
        driver.find_element(By.ID, "kill-all").click()
        self.wait(lambda: driver.find_element(By.ID, "confirm-kill-all").get_attribute("open") is not None)
        self.assertIn("2 running jobs", self.text("#confirm-text"))
        self.shot("11-kill-all-confirmation")
        driver.find_element(By.ID, "confirm-kill").click()
        self.wait(lambda: all(self.server.job(job)["status"] == "killed" for job in others[:2]))

        # Delete a finished job behind a confirmation: gone from the list and the server.
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={others[2]}")
        self.wait(lambda: self.selected_status() == "killed")
        self.assertTrue(driver.find_element(By.ID, "job-kill").get_attribute("hidden"))
        driver.find_element(By.ID, "job-delete").click()
        self.wait(lambda: driver.find_element(By.ID, "confirm-delete").get_attribute("open") is not None)
        self.assertIn(others[2], self.text("#confirm-delete-text"))
        self.shot("11b-delete-confirmation")
        driver.find_element(By.CSS_SELECTOR, "#confirm-delete button[value='delete']").click()
        self.wait(lambda: not driver.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-job='{others[2]}']"))
        self.assertEqual(self.server.request("GET", f"/api/agents/jobs/{others[2]}")[0], 404)

        # Keyboard: every control in the launch form is reachable and labelled.
        for control in driver.find_elements(By.CSS_SELECTOR, "#launch input, #launch select, #launch textarea"):
            self.assertTrue(driver.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']"))

        # The overview the README shows: several jobs, one of them open with its result.
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={job_id}")
        self.wait(lambda: self.selected_status() == "done" and len(self.log_lines()) == len(second))
        self.shot("12-overview")

        # A phone, 390 px wide: nothing is wider than the screen, with the job list alone and
        # with a job open; the job's prompt and log still show.
        driver.set_window_size(390, 844)
        for route in ("", f"#job={job_id}"):
            driver.get(f"http://127.0.0.1:{self.server.port}/{route}")
            self.wait(lambda: self.text("#connection") == "live")
            if route:
                self.wait(lambda: self.selected_status() == "done")
            width = self.js("return window.innerWidth")
            self.assertLessEqual(self.js("return document.documentElement.scrollWidth"), width, f"horizontal scrolling at 390 px on /{route}")
            self.assertLessEqual(self.js("return Math.max(...[...document.querySelectorAll('body *')].filter((e) => e.offsetParent !== null && !e.closest('.log')).map((e) => e.getBoundingClientRect().right))"), width + 0.5)
            # The job list fits its box too (no sideways scrolling in it), with the start time.
            self.assertLessEqual(self.js("const t = document.querySelector('.table-scroll'); return t.scrollWidth - t.clientWidth"), 0)
            self.assertTrue(self.js("return [...document.querySelectorAll('#jobs td.started')].some((e) => e.offsetParent !== null && e.textContent.length > 0)"))
        self.assertEqual(self.text("#job-prompt"), "slow 40")
        self.shot("12b-phone-390px")
        driver.set_window_size(1440, 900)

        # Dark colour scheme.
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={job_id}")
        self.wait(lambda: self.selected_status() == "done")
        self.shot("13-dark")

        # Sign out: the session is revoked on the server, not just forgotten by the page.
        driver.find_element(By.ID, "sign-out").click()
        self.wait(lambda: self.text("#connection") == "signed out")
        self.assertIsNone(self.js("return localStorage.getItem('agentgate.session')"))
        self.assertEqual(self.server.request("GET", "/api/agents/jobs", headers={"Authorization": f"Bearer {session}"}, token=False)[0], 401)
        self.shot("14-signed-out")

        # Signing in again in the same tab (only the fragment changes): a wrong token is said
        # to be refused, the right one signs in (found by the newcomer trial: nothing happened).
        base = f"http://127.0.0.1:{self.server.port}/"
        driver.get(base + "#token=" + "0" * 64)
        self.wait(lambda: "refused" in self.text("#signin-reason"), message="a wrong token was not said to be refused")
        self.assertNotIn("token", driver.current_url)
        self.shot("15-token-refused")
        driver.get(base + f"#token={TOKEN}")
        self.wait(lambda: self.text("#connection") == "live", message="pasting the token URL into the same tab did not sign in")
        self.assertNotIn("token", driver.current_url)


    def test_queue(self):
        """A queued job in the list and the job view: its place and why it waits, live as the
        queue moves, a Cancel that ends it without running, and the log once it runs."""
        driver = self.driver
        self.open_dashboard()

        def launch(prompt, **fields):
            status, reply, _ = self.server.request("POST", "/api/agents/jobs", {"provider": "claude", "prompt": prompt, **fields})
            self.assertEqual(status, 201, reply)
            return reply["job"]["id"]

        holder = launch("hang", key="story-7", project="web")
        second = launch("slow 3", key="story-7", project="web")
        third = launch("slow 3", key="story-7", project="web")
        self.assertEqual(self.server.job(third)["queuePosition"], 2)
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={third}")
        self.wait(lambda: self.selected_status() == "queued (2nd)")
        self.wait(lambda: f"key story-7 is held by job {holder}" in self.text("#job-meta"))
        self.assertIn("project web", self.text("#job-meta"))
        self.assertIn("queued (2nd): key story-7 is held by job " + holder, self.log_lines())
        self.assertEqual(self.text("#job-kill"), "Cancel")
        row = driver.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job='{second}'] .status")
        self.assertEqual(row.text, "queued (1st)")
        self.shot("13-queued")

        # Cancel the one ahead: this one moves up, live.
        driver.find_element(By.CSS_SELECTOR, f"button[aria-label='Cancel job {second}']").click()
        self.wait(lambda: self.server.job(second)["status"] == "killed")
        self.wait(lambda: self.selected_status() == "queued (1st)")
        self.assertIn("[agentgate] 1st in the queue: key story-7 is held by job " + holder, self.log_lines())
        self.assertIsNone(self.server.job(second)["pid"])

        # The holder ends: this one runs, and its log goes on from the queue's lines.
        self.server.request("DELETE", f"/api/agents/jobs/{holder}")
        self.wait(lambda: self.selected_status() == "done")
        lines = self.log_lines()
        self.assertTrue(any(line.startswith("admitted after waiting") for line in lines), lines)
        self.assertIn("step 3 of 3: still working", lines)
        # From the form: a key held by a running job, with "refuse", is refused on the key
        # field, naming the holder; a priority reaches the job.
        blocker = launch("hang", key="story-8")
        driver.find_element(By.ID, "launch-key").send_keys("story-8")
        Select(driver.find_element(By.ID, "launch-onConflict")).select_by_value("reject")
        driver.find_element(By.ID, "launch-prompt").send_keys("hang")
        driver.find_element(By.ID, "launch-submit").click()
        self.wait(lambda: f"job {blocker} (running) holds key story-8" in self.text("#error-key"))
        driver.find_element(By.ID, "launch-key").clear()
        Select(driver.find_element(By.ID, "launch-onConflict")).select_by_value("")
        self.server.request("DELETE", f"/api/agents/jobs/{blocker}")
        priority_box = driver.find_element(By.ID, "launch-priority")
        priority_box.send_keys("3")
        prioritised = self.launch("slow 1")
        priority_box.clear()
        self.assertEqual(self.server.job(prioritised)["priority"], 3)
        self.wait(lambda: self.selected_status() == "done")
        # A budget from the form: the job is stopped at its timeout and says so.
        timeout_box = driver.find_element(By.ID, "launch-timeoutSeconds")
        timeout_box.clear()
        timeout_box.send_keys("1")
        timed = self.launch("hang")
        timeout_box.clear()
        self.wait(lambda: self.selected_status() == "failed")
        self.assertIn("budget 1 s", self.text("#job-meta"))
        self.assertTrue(any(line.startswith("timeout of 1 s reached") for line in self.log_lines()), self.log_lines())
        self.assertEqual(self.server.job(timed)["result"]["endReason"], "timeout")
        self.assertIn("stopped: it ran past its timeout of 1 s", self.text("#result-text"))
        # The spend against a cost budget, live while the job runs.
        spender = launch("spend", maxBudgetUsd=1)
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={spender}")
        # Loaded before the second report (1.5 s after the first): it arrives live.
        self.wait(lambda: "$0.02 of $1" in self.text("#job-meta"))
        self.wait(lambda: "$0.03 of $1" in self.text("#job-meta"))
        self.assertEqual(self.server.job(spender)["status"], "running")
        self.server.request("DELETE", f"/api/agents/jobs/{spender}")
        # Leave the list as the other tests expect it.
        for job in (holder, second, third, timed, blocker, prioritised, spender):
            self.wait(lambda: self.server.job(job)["status"] in ("done", "killed", "failed"))
            self.assertEqual(self.server.request("POST", f"/api/agents/jobs/{job}/delete")[0], 200)

    def test_conversation(self):
        """The window that launched a job steers it; a second window watches (two viewers,
        who controls it, no message box), asks for control and is handed it; its follow-up
        shows in the log as the user's turn, then the agent's answer; once the job ended, the
        box continues it (the agent's session resumed as the job's next run)."""
        driver = self.driver
        self.open_dashboard()
        job = self.launch("converse")
        self.wait(lambda: self.text("#job-presence") == "1 watching · you control this job")
        self.assertTrue(driver.find_element(By.ID, "message-text").is_displayed())
        first_window = driver.current_window_handle
        driver.switch_to.new_window("window")
        second_window = driver.current_window_handle
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={job}")
        self.wait(lambda: self.text("#job-presence").startswith("2 watching · connection ")
                  and self.text("#job-presence").endswith(" controls this job"))
        self.assertFalse(driver.find_element(By.ID, "job-message").is_displayed())
        driver.find_element(By.ID, "job-control-ask").click()
        driver.switch_to.window(first_window)
        self.wait(lambda: "asks for control" in self.text("#job-control-asks"))
        self.shot("16-control-asked")
        driver.find_element(By.ID, "job-control-give").click()
        self.wait(lambda: self.text("#job-presence").startswith("2 watching · connection "))
        self.assertFalse(driver.find_element(By.ID, "job-message").is_displayed())
        driver.switch_to.window(second_window)
        self.wait(lambda: self.text("#job-presence") == "2 watching · you control this job")
        box = driver.find_element(By.ID, "message-text")
        self.wait(lambda: box.is_displayed(), message="no message box for the new controller")
        self.assertTrue(self.server.job(job)["acceptsMessages"])
        box.send_keys("now the tests too")
        box.send_keys("\n")  # Enter sends
        self.wait(lambda: "› now the tests too" in self.log_lines(), message="the message is not in the log")
        self.assertEqual(box.get_attribute("value"), "")
        rows = driver.find_elements(By.CSS_SELECTOR, "#log .line.stream-user")
        self.assertEqual([row.text for row in rows], ["› now the tests too"])
        self.shot("17-conversation")
        self.wait(lambda: self.selected_status() == "done", timeout=40)
        lines = self.log_lines()
        self.assertIn("you said: now the tests too", lines)
        self.assertLess(lines.index("› now the tests too"), lines.index("you said: now the tests too"))
        final = self.server.job(job)
        self.assertEqual((final["messages"], final["acceptsMessages"], final["result"]["text"]), (1, True, "second"))
        # Finished: the box stays, and a message continues the job (its session resumed).
        self.wait(lambda: box.is_displayed() and box.get_attribute("placeholder").startswith("Continue this job"))
        box.send_keys("and the docs")
        box.send_keys("\n")
        self.wait(lambda: "resumed: and the docs" in self.log_lines(), timeout=20, message="the job was not continued")
        self.wait(lambda: self.selected_status() == "done" and self.server.job(job)["messages"] == 2, timeout=20)
        lines = self.log_lines()
        self.assertLess(lines.index("you said: now the tests too"), lines.index("› and the docs"))
        self.assertLess(lines.index("› and the docs"), lines.index("resumed: and the docs"))
        self.assertEqual(self.server.job(job)["result"]["text"], "third")
        self.shot("17b-continued")
        driver.close()
        driver.switch_to.window(first_window)
        self.assertEqual(self.server.request("POST", f"/api/agents/jobs/{job}/delete")[0], 200)

    def test_permission_question(self):
        """An ACP agent asks permission (the operator's policy is ask): the job view shows the
        question with a button per option; the answer reaches the agent and the log."""
        driver = self.driver
        self.open_dashboard()
        status, reply, _ = self.server.request("POST", "/api/agents/jobs", {"provider": "opencode-acp", "prompt": "write the notes"})
        self.assertEqual(status, 201, reply)
        job = reply["job"]["id"]
        driver.get(f"http://127.0.0.1:{self.server.port}/#job={job}")
        self.wait(lambda: "The agent asks permission for Write notes.txt" in self.text("#job-questions"))
        self.assertIn("? permission for Write notes.txt: Allow once / Reject", self.log_lines())
        self.shot("18-permission-question")
        driver.find_element(By.XPATH, "//div[@id='job-questions']//button[text()='Allow once']").click()
        self.wait(lambda: self.selected_status() == "done")
        lines = self.log_lines()
        self.assertIn("permission for Write notes.txt: Allow once", lines)
        self.assertIn("← Write notes.txt", lines)
        self.assertFalse(driver.find_element(By.ID, "job-questions").is_displayed())
        answers = [e["answer"] for e in self.server.request("GET", f"/api/agents/jobs/{job}/events?limit=1000")[1]["events"]
                   if e["type"] == "job:permission"]
        self.assertEqual(answers, [None, "allow"])
        self.assertEqual(self.server.request("POST", f"/api/agents/jobs/{job}/delete")[0], 200)

    def test_worktree_review(self):
        """A worktree job's change in the job view: the files, a readable diff, Apply (a
        conflict named, nothing changed; then a merge) and Discard behind confirmations."""
        driver = self.driver
        repo = os.path.join(self.server.temp, "project")
        os.makedirs(repo)

        def git(*args):
            return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True,
                                  env={"PATH": "/usr/bin:/bin", "HOME": self.server.temp, "GIT_CONFIG_NOSYSTEM": "1"}).stdout

        git("init", "-q", "-b", "main")
        git("config", "user.email", "me@example.com")
        git("config", "user.name", "Me")
        with open(os.path.join(repo, "a.txt"), "w") as file:
            file.write("one\n")
        git("add", "-A")
        git("commit", "-qm", "initial")

        self.open_dashboard()
        cwd = driver.find_element(By.ID, "launch-cwd")
        cwd.clear()
        cwd.send_keys(repo)
        self.assertFalse(driver.find_element(By.ID, "launch-base-field").is_displayed())
        driver.find_element(By.ID, "launch-worktree").click()
        self.assertTrue(driver.find_element(By.ID, "launch-base-field").is_displayed())
        job_id = self.launch("edit")
        self.wait(lambda: self.selected_status() == "done")
        self.assertIn("[agentgate] claude preparing its worktree", self.log_lines())
        self.assertTrue(any(line.startswith("[agentgate] claude started") for line in self.log_lines()))
        self.wait(lambda: driver.find_element(By.ID, "job-change").is_displayed())
        self.wait(lambda: self.text("#change-summary") == "4 files changed, +703 \u22120")
        self.assertEqual(self.text("#change-state"), "ready")
        self.assertIn(f"branch agentgate/{job_id}", self.text("#change-where"))
        self.assertIn("4 files changed", self.text("#job-meta"))
        self.wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#change-files .diff-file")) == 4)
        files = {element.get_attribute("data-path"): element for element in driver.find_elements(By.CSS_SELECTOR, "#change-files .diff-file")}
        self.assertEqual(set(files), {"a.txt", "new.txt", "markup.txt", "big.txt"})
        # A 700-line diff: everything starts collapsed, nothing drawn until opened.
        self.assertFalse(any(element.get_attribute("open") for element in files.values()))
        self.assertEqual(len(driver.find_elements(By.CSS_SELECTOR, "#change-files .diff-line")), 0)
        self.assertEqual(files["a.txt"].find_element(By.CSS_SELECTOR, ".file-status").text, "M")
        self.assertEqual(files["new.txt"].find_element(By.CSS_SELECTOR, ".file-counts").text, "+1 \u22120")
        files["a.txt"].find_element(By.CSS_SELECTOR, "summary").click()
        self.wait(lambda: files["a.txt"].find_elements(By.CSS_SELECTOR, ".diff-line.add"))
        self.assertEqual([line.text for line in files["a.txt"].find_elements(By.CSS_SELECTOR, ".diff-line.add")], ["+changed by the agent"])
        self.assertTrue(files["a.txt"].find_elements(By.CSS_SELECTOR, ".diff-line.hunk"))
        # What the agent wrote is text, never markup.
        files["markup.txt"].find_element(By.CSS_SELECTOR, "summary").click()
        self.wait(lambda: files["markup.txt"].find_elements(By.CSS_SELECTOR, ".diff-line.add"))
        self.assertIn('<img src=x onerror="window.pwned=1">', files["markup.txt"].text)
        self.assertFalse(driver.find_elements(By.CSS_SELECTOR, "#change-files img"))
        self.assertIsNone(self.js("return window.pwned ?? null"))
        self.shot("16-worktree-diff")

        # The user committed over a.txt meanwhile: Apply names the conflict, nothing changes.
        with open(os.path.join(repo, "a.txt"), "w") as file:
            file.write("one\nmine\n")
        git("commit", "-qam", "mine")
        head = git("rev-parse", "HEAD")
        driver.find_element(By.ID, "change-apply").click()
        self.wait(lambda: driver.find_element(By.ID, "confirm-apply").get_attribute("open") is not None)
        self.assertIn(f"agentgate/{job_id}", self.text("#confirm-apply .text"))
        self.shot("17-apply-confirmation")
        driver.find_element(By.CSS_SELECTOR, "#confirm-apply button[value='merge']").click()
        self.wait(lambda: "conflicts" in self.text("#change-error"))
        self.assertEqual([item.text for item in driver.find_elements(By.CSS_SELECTOR, "#change-error .conflicts li")], ["a.txt"])
        self.assertEqual(git("rev-parse", "HEAD"), head)
        self.assertEqual(git("status", "--porcelain"), "")
        self.shot("18-apply-conflict")

        # Cancelling the dialog does nothing; then the merge goes through.
        git("reset", "-q", "--hard", "HEAD~1")
        driver.find_element(By.ID, "change-apply").click()
        self.wait(lambda: driver.find_element(By.ID, "confirm-apply").get_attribute("open") is not None)
        driver.find_element(By.CSS_SELECTOR, "#confirm-apply button[value='cancel']").click()
        time.sleep(0.3)
        self.assertEqual(self.text("#change-state"), "ready")
        driver.find_element(By.ID, "change-apply").click()
        self.wait(lambda: driver.find_element(By.ID, "confirm-apply").get_attribute("open") is not None)
        driver.find_element(By.CSS_SELECTOR, "#confirm-apply button[value='merge']").click()
        self.wait(lambda: self.text("#change-state") == "applied")
        self.assertEqual(self.text("#change-error"), "")
        with open(os.path.join(repo, "a.txt")) as file:
            self.assertEqual(file.read(), "one\nchanged by the agent\n")
        self.assertTrue(os.path.exists(os.path.join(repo, "big.txt")))
        self.assertFalse(driver.find_element(By.ID, "change-apply").is_displayed())

        # Discard: the worktree and the branch go.
        driver.find_element(By.ID, "change-discard").click()
        self.wait(lambda: driver.find_element(By.ID, "confirm-discard").get_attribute("open") is not None)
        self.assertIn("the change was applied", self.text("#confirm-discard .text"))
        driver.find_element(By.CSS_SELECTOR, "#confirm-discard button[value='discard']").click()
        self.wait(lambda: self.text("#change-state") == "discarded")
        self.assertNotIn(f"agentgate/{job_id}", git("branch", "--list"))
        self.assertEqual(self.server.job(job_id)["worktree"]["state"], "discarded")
        self.shot("19-discarded")


if __name__ == "__main__":
    unittest.main(verbosity=2)
