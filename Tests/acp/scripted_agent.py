"""A real ACP agent built with the PyPI package `agent-client-protocol`, acting on its prompt
the way the tests need (what it does is chosen by words in the prompt):

  "edit"    asks permission to write notes.txt in its cwd, and writes it only when allowed
  "slow N"  streams N pieces of its answer, one each 0.1 s (300 without N), stopping when cancelled
  anything  a plan, then "Looking at: <prompt>" and "Done." streamed in chunks

It keeps every session's turns, so `session/load` replays them, and answers every prompt with
its stop reason (end_turn, or cancelled after `session/cancel`).
"""

import asyncio
import os
import sys

from acp import (PROTOCOL_VERSION, Agent, run_agent, plan_entry, session_notification, start_edit_tool_call,
                 text_block, tool_content, update_agent_message_text, update_agent_thought_text, update_plan,
                 update_tool_call, update_user_message_text)
from acp.schema import AgentCapabilities, InitializeResponse, NewSessionResponse, PermissionOption, PromptResponse


class ScriptedAgent(Agent):
    def __init__(self):
        self.client = None
        self.sessions = {}
        self.cwds = {}
        self.cancelled = set()

    def on_connect(self, conn):
        self.client = conn

    async def initialize(self, protocol_version, client_capabilities=None, client_info=None, **kwargs):
        return InitializeResponse(protocol_version=PROTOCOL_VERSION, agent_capabilities=AgentCapabilities(load_session=True))

    async def new_session(self, cwd, mcp_servers=None, **kwargs):
        session = f"sess-{os.getpid()}-{len(self.sessions) + 1}"
        self.sessions[session] = []
        self.cwds[session] = cwd
        return NewSessionResponse(session_id=session)

    async def load_session(self, cwd, session_id, mcp_servers=None, **kwargs):
        # A session of an earlier process: its turns are kept in a file beside the cwd.
        path = os.path.join(cwd, f".acp-{session_id}")
        turns = []
        if os.path.exists(path):
            with open(path) as file:
                turns = [line.rstrip("\n").split("\t", 1) for line in file if "\t" in line]
        self.sessions[session_id] = turns
        self.cwds[session_id] = cwd
        for user, agent in turns:
            await self.say(session_id, update_user_message_text(user))
            await self.say(session_id, update_agent_message_text(agent))
        return None

    async def say(self, session, update):
        await self.client.session_update(session_id=session, update=update)

    async def prompt(self, session_id, prompt, **kwargs):
        text = " ".join(block.text for block in prompt if getattr(block, "text", None))
        self.cancelled.discard(session_id)
        await self.say(session_id, update_plan([plan_entry("Read the request", priority="high", status="completed"),
                                                 plan_entry("Answer it", status="in_progress")]))
        await self.say(session_id, update_agent_thought_text("Thinking about it."))
        for piece in ["Looking ", "at: ", text, "\n"]:
            await self.say(session_id, update_agent_message_text(piece))
        if "edit" in text:
            path = os.path.join(self.cwds.get(session_id, "."), "notes.txt")
            await self.say(session_id, start_edit_tool_call("call-1", "Write notes.txt", path, "noted\n"))
            answer = await self.client.request_permission(
                session_id=session_id, tool_call=update_tool_call("call-1", title="Write notes.txt"),
                options=[PermissionOption(option_id="allow", name="Allow once", kind="allow_once"),
                         PermissionOption(option_id="reject", name="Reject", kind="reject_once")])
            chosen = getattr(answer.outcome, "option_id", None)
            if chosen == "allow":
                await self.say(session_id, update_tool_call("call-1", status="in_progress"))
                with open(path, "w") as file:
                    file.write("noted\n")
                await self.say(session_id, update_tool_call("call-1", status="completed",
                                                            content=[tool_content(text_block("wrote notes.txt"))]))
            else:
                await self.say(session_id, update_tool_call("call-1", status="failed",
                                                            content=[tool_content(text_block(f"not allowed ({answer.outcome.outcome})"))]))
        if "slow" in text:
            words = text.split()
            after = words[words.index("slow") + 1] if "slow" in words and words.index("slow") + 1 < len(words) else ""
            for step in range(int(after) if after.isdigit() else 300):
                if session_id in self.cancelled:
                    return PromptResponse(stop_reason="cancelled")
                await self.say(session_id, update_agent_message_text(f"step {step} "))
                await asyncio.sleep(0.1)
        await self.say(session_id, update_agent_message_text("Done."))
        self.sessions.setdefault(session_id, []).append((text, f"Looking at: {text}"))
        with open(os.path.join(self.cwds.get(session_id, "."), f".acp-{session_id}"), "a") as file:
            file.write(f"{text}\tLooking at: {text}\n")
        return PromptResponse(stop_reason="end_turn")

    async def cancel(self, session_id, **kwargs):
        self.cancelled.add(session_id)


if __name__ == "__main__":
    asyncio.run(run_agent(ScriptedAgent()))
