"""The scripted model turns the real Claude Code CLI is run against, and the exact lines a user
must see for each (as `agentgate exec` prints them through a pipe, and as a `format=text`
WebSocket sends them). In the expected lines, S stands for the session id, T for a duration,
$C for a cost, J for the job id, P for a pid and CWD for the job's directory.
"""

BASH_OK = {"IS_SANDBOX": "1"}

SCENARIOS = [
    {
        "name": "plain-text",
        "script": [{"text": "Hello there.\n\nThis is a second paragraph."}],
        "expect": [
            "session S · model claude-opus-5-5 · permissions default",
            "Hello there.",
            "",
            "This is a second paragraph.",
            "✓ done · T · 1 turn · $C",
        ],
        "status": "done",
    },
    {
        "name": "bash-tool",
        "mode": "bypassPermissions",
        "script": [
            {"blocks": [{"text": "Let me look."}, {"tool": "Bash", "input": {"command": "echo hello-from-bash", "description": "Say hello"}}]},
            {"text": "The command said hello."},
        ],
        "expect": [
            "session S · model claude-opus-5-5 · permissions bypassPermissions",
            "Let me look.",
            "→ Bash: echo hello-from-bash",
            "← hello-from-bash",
            "The command said hello.",
            "✓ done · T · 2 turns · $C",
        ],
        "status": "done",
    },
    *[
        {
            "name": f"write-edit-{mode}",
            "mode": mode,
            "script": [
                {"blocks": [{"tool": "Write", "input": {"file_path": "notes.txt", "content": "one\ntwo\n"}}]},
                {"blocks": [{"tool": "Edit", "input": {"file_path": "notes.txt", "old_string": "two", "new_string": "TWO"}}]},
                {"text": "Edited."},
            ],
            "expect": [
                f"session S · model claude-opus-5-5 · permissions {mode}",
                "→ Write: notes.txt",
                "← File created successfully at: notes.txt (file state is current in your context — no need to Read it back)",
                "→ Edit: notes.txt",
                "← The file notes.txt has been updated successfully. (file state is current in your context — no need to Read it back)",
                "Edited.",
                "✓ done · T · 3 turns · $C",
            ],
            "files": {"notes.txt": "one\nTWO\n"},
            "status": "done",
        }
        for mode in ["acceptEdits", "bypassPermissions"]
    ],
    *[
        {
            "name": f"write-edit-denied-{mode}",
            "mode": mode,
            "setup": {"notes.txt": "one\ntwo\n"},
            "script": [
                {"blocks": [{"tool": "Write", "input": {"file_path": "new.txt", "content": "one\n"}}]},
                {"blocks": [{"tool": "Edit", "input": {"file_path": "notes.txt", "old_string": "two", "new_string": "TWO"}}]},
                {"text": "I could not change anything."},
            ],
            "expect": [
                f"session S · model claude-opus-5-5 · permissions {mode}",
                "→ Write: new.txt",
                "⊘ Write denied: " + denial("Write", "new.txt"),
                "→ Edit: notes.txt",
                "⊘ Edit denied: " + denial("Edit", "notes.txt"),
                "I could not change anything.",
                "⚠ done, 2 tool calls denied · T · 3 turns · $C",
            ],
            "files": {"new.txt": None, "notes.txt": "one\ntwo\n"},
            "status": "done",
            "result": {"permissionDenials": [{"tool": "Write", "toolUseId": "toolu_001_00"}, {"tool": "Edit", "toolUseId": "toolu_002_00"}]},
        }
        for mode, denial in [
            ("default", lambda tool, path: f"Claude requested permissions to write to CWD/{path}, but you haven't granted it yet."),
            ("plan", lambda tool, path: f"Cannot write to CWD/{path} while in plan mode."),
            ("dontAsk", lambda tool, path: (f"Permission to use {tool} has been denied because Claude Code is running in don't ask mode. "
                                            "IMPORTANT: You *may* attempt to accomplish this action using other tools that might")[:160] + "…"),
        ]
    ],
    {
        "name": "edit-missing-file",
        "mode": "acceptEdits",
        "script": [
            {"blocks": [{"tool": "Edit", "input": {"file_path": "missing.txt", "old_string": "a", "new_string": "b"}}]},
            {"text": "There is no such file."},
        ],
        "expect": [
            "session S · model claude-opus-5-5 · permissions acceptEdits",
            "→ Edit: missing.txt",
            # Claude's <tool_use_error> markup is for the model, not the user.
            "← error: File does not exist. Note: your current working directory is CWD.",
            "There is no such file.",
            "✓ done · T · 2 turns · $C",
        ],
        "status": "done",
    },
    {
        "name": "command-fails",
        "mode": "bypassPermissions",
        "script": [
            {"blocks": [{"tool": "Bash", "input": {"command": "ls /no-such-dir-here; echo second-line >&2; exit 2"}}]},
            {"text": "It failed."},
        ],
        "expect": [
            "session S · model claude-opus-5-5 · permissions bypassPermissions",
            "→ Bash: ls /no-such-dir-here; echo second-line >&2; exit 2",
            "← error (exit code 2): ls: cannot access '/no-such-dir-here': No such file or directory (+1 line)",
            "It failed.",
            "✓ done · T · 2 turns · $C",
        ],
        "status": "done",
    },
    {
        "name": "overloaded-then-success",
        "env": {"CLAUDE_CODE_MAX_RETRIES": "4"},
        "script": [{"status": 529, "times": 2}, {"text": "Recovered."}],
        "expect": [
            "session S · model claude-opus-5-5 · permissions default",
            "API overloaded (529), retry 1 of 4 in T",
            "API overloaded (529), retry 2 of 4 in T",
            "Recovered.",
            "✓ done · T · 1 turn · $C",
        ],
        "status": "done",
    },
    {
        "name": "api-error",
        "script": [{"status": 500, "message": "Internal server error (scripted)", "retry": False}],
        "expect": [
            "session S · model claude-opus-5-5 · permissions default",
            "✗ API error 500: Internal server error (scripted). This is a server-side issue, usually temporary — try again in a moment. If it persists, check your inference gateway (127.0.0.1:PORT). · T · 1 turn · $C",
        ],
        "status": "failed",
        "result": {"isError": True, "apiErrorStatus": 500, "endReason": "api_error"},
    },
    {
        "name": "max-turns",
        "mode": "bypassPermissions",
        "options": {"maxTurns": 1},
        "script": [
            {"blocks": [{"tool": "Bash", "input": {"command": "echo 1"}}]},
            {"blocks": [{"tool": "Bash", "input": {"command": "echo 2"}}]},
        ],
        "expect": [
            "session S · model claude-opus-5-5 · permissions bypassPermissions",
            "→ Bash: echo 1",
            "← 1",
            "✗ max turns: Reached maximum number of turns (1) · T · 2 turns · $C",
        ],
        "status": "failed",
        "result": {"isError": True, "endReason": "max_turns"},
    },
    {
        "name": "parallel-tools",
        "mode": "bypassPermissions",
        "script": [
            {"blocks": [{"tool": "Bash", "input": {"command": "sleep 1; echo first"}}, {"tool": "Bash", "input": {"command": "echo second"}}]},
            {"text": "Both ran."},
        ],
        "expect": [
            "session S · model claude-opus-5-5 · permissions bypassPermissions",
            "→ Bash: sleep 1; echo first",
            "→ Bash: echo second",
            "← Bash #1: first",
            "← Bash #2: second",
            "Both ran.",
            "✓ done · T · 3 turns · $C",
        ],
        "status": "done",
    },
    {
        "name": "task-subagent",
        "mode": "bypassPermissions",
        "script": [
            {"blocks": [{"tool": "Task", "input": {"description": "Count files", "prompt": "SUBAGENT count the files", "subagent_type": "general-purpose"}}]},
            {"text": "A subagent is counting."},
            {"match": "SUBAGENT", "blocks": [{"tool": "Bash", "input": {"command": "echo sub-bash"}}]},
            {"match": "sub-bash", "text": "There are no files."},
            {"text": "The subagent found no files."},
        ],
        # The subagent runs in the background, so its lines interleave with the main agent's
        # in an order the test does not fix; these are checked as a set.
        "expect_unordered": True,
        "expect": [
            "session S · model claude-opus-5-5 · permissions bypassPermissions",
            "→ Task: Count files",
            "← subagent started in the background",
            "A subagent is counting.",
            "  ⋮ → Bash: echo sub-bash",
            "  ⋮ ← sub-bash",
            "  ⋮ There are no files.",
            "  ⋮ ← subagent Count files completed: There are no files.",
            "The subagent found no files.",
            "✓ done · T · 3 turns · $C",
        ],
        "last": "✓ done · T · 3 turns · $C",
        "status": "done",
    },
    {
        "name": "thinking",
        "script": [{"blocks": [{"thinking": "The user wants an answer.\nI will give one."}, {"text": "Here is the answer."}]}],
        "expect": [
            "session S · model claude-opus-5-5 · permissions default",
            "(thinking) The user wants an answer. (+1 line)",
            "Here is the answer.",
            "✓ done · T · 1 turn · $C",
        ],
        "status": "done",
    },
    {
        "name": "long-answer",
        "script": [{"text_deltas": [f"word{i} " + ("\n" if i % 500 == 499 else "") for i in range(3000)]}],
        "expect": [
            "session S · model claude-opus-5-5 · permissions default",
            *[" ".join(f"word{i}" for i in range(start, start + 500)) + " " for start in range(0, 3000, 500)][:-1],
            " ".join(f"word{i}" for i in range(2500, 3000)) + " ",
            "✓ done · T · 1 turn · $C",
        ],
        "status": "done",
    },
]


def scenario(name):
    return next(s for s in SCENARIOS if s["name"] == name)
