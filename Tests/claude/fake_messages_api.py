"""A local stand-in for the Anthropic Messages API that plays scripted model turns, so the
real Claude Code CLI can run offline in tests (`ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`).

It answers `POST /v1/messages` with the API's server-sent event stream: `message_start`,
`content_block_start` / `content_block_delta` (`text_delta`, `thinking_delta`,
`input_json_delta`) / `content_block_stop`, `message_delta` (stop reason, usage) and
`message_stop`. Each request takes the next step of the script; the CLI runs the tools a step
asks for and sends their results in its next request, which the server records for the test.

A script is a list of steps, each one of:

    {"text": "Hello"}                                  one text block, end_turn
    {"blocks": [{"thinking": "…"}, {"text": "…"},      several blocks in one message; a
                {"tool": "Bash", "input": {...}}]}     message with a tool block stops tool_use
    {"text_deltas": ["a", "b", …], "delay": 0.01}      one text block streamed as many deltas
    {"status": 529, "times": 2}                        that error answer twice, then the next step
    {"status": 400, "message": "…", "retry": false}    an error answer (x-should-retry: false)
    {"hang": 30}                                       headers, message_start, then silence

A step may carry "match": "TEXT": it is taken only by a request whose last user turn contains
TEXT (a Task subagent's first request carries its prompt), and steps without one are taken in
order by the other requests. When the script runs out, the answer is a short text.

Run it alone with `python3 fake_messages_api.py SCRIPT.json [PORT]`.
"""

import http.server
import json
import sys
import threading
import time


class FakeMessagesAPI:
    def __init__(self, script, port=0):
        self.script = [dict(step) for step in script]
        self.lock = threading.Lock()
        self.requests = []
        self.served = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self):
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.startswith("/v1/messages") or self.path.startswith("/v1/messages/count_tokens"):
                    payload = json.dumps({"input_tokens": 10}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                step = api.take(body)
                api.answer(self, body, step)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # The CLI hangs up mid-answer when its job is killed: not an error here.
                if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # The script

    @staticmethod
    def last_user_text(body):
        for message in reversed(body.get("messages", [])):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(json.dumps(block) for block in content or [])
        return ""

    def take(self, body):
        with self.lock:
            self.requests.append(body)
            text = self.last_user_text(body)
            chosen = None
            for index, step in enumerate(self.script):
                if "match" in step and step["match"] in text:
                    chosen = index
                    break
            if chosen is None:
                chosen = next((i for i, step in enumerate(self.script) if "match" not in step), None)
            if chosen is None:
                return {"text": "(the script has no more steps)"}
            step = self.script[chosen]
            if step.get("times", 1) > 1:
                step["times"] -= 1
                return dict(step)
            self.served += 1
            return self.script.pop(chosen)

    def tool_results(self):
        """Every tool_result block the CLI sent back, in order, as (tool_use_id, text, is_error)."""
        results = []
        seen = set()
        for body in self.requests:
            for message in body.get("messages", []):
                if message.get("role") != "user" or isinstance(message.get("content"), str):
                    continue
                for block in message.get("content") or []:
                    if block.get("type") == "tool_result" and block["tool_use_id"] not in seen:
                        seen.add(block["tool_use_id"])
                        content = block.get("content")
                        if isinstance(content, list):
                            content = "\n".join(part.get("text", "") for part in content)
                        results.append((block["tool_use_id"], content, bool(block.get("is_error"))))
        return results

    # The answer

    def answer(self, handler, body, step):
        if "status" in step:
            status = step["status"]
            kinds = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error", 401: "authentication_error",
                     400: "invalid_request_error", 403: "permission_error", 404: "not_found_error"}
            message = step.get("message", {529: "Overloaded"}.get(status, "error"))
            payload = json.dumps({"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}).encode()
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            if step.get("retry") is False:
                handler.send_header("x-should-retry", "false")
            if "retry_after" in step:
                handler.send_header("retry-after", str(step["retry_after"]))
            handler.end_headers()
            handler.wfile.write(payload)
            return

        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("connection", "close")
        handler.end_headers()
        handler.close_connection = True
        model = body.get("model", "claude-test")
        message_id = f"msg_{self.served:04d}_{int(time.time() * 1000) % 100000}"
        write = handler.wfile.write
        delay = step.get("delay", 0)

        def event(kind, data):
            data = {"type": kind, **data}
            write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
            handler.wfile.flush()

        event("message_start", {"message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})
        if "hang" in step:
            time.sleep(step["hang"])
            return

        blocks = step.get("blocks")
        if blocks is None:
            if "text_deltas" in step:
                blocks = [{"text_deltas": step["text_deltas"]}]
            else:
                blocks = [{"text": step.get("text", "")}]
        stop_reason = step.get("stop_reason")
        output_tokens = 0
        for index, block in enumerate(blocks):
            if "thinking" in block:
                event("content_block_start", {"index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                event("content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": block["thinking"]}})
                event("content_block_delta", {"index": index, "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}})
            elif "tool" in block:
                tool_id = block.get("id") or f"toolu_{self.served:03d}_{index:02d}"
                event("content_block_start", {"index": index, "content_block": {"type": "tool_use", "id": tool_id, "name": block["tool"], "input": {}}})
                encoded = json.dumps(block.get("input", {}))
                for start in range(0, len(encoded), 40):
                    event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": encoded[start:start + 40]}})
                stop_reason = stop_reason or "tool_use"
            else:
                event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                for piece in block.get("text_deltas", [block.get("text", "")]):
                    if delay:
                        time.sleep(delay)
                    event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
                    output_tokens += 1
            event("content_block_stop", {"index": index})
        event("message_delta", {"delta": {"stop_reason": stop_reason or "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": max(output_tokens, 5)}})
        event("message_stop", {})


if __name__ == "__main__":
    script = json.load(open(sys.argv[1]))
    api = FakeMessagesAPI(script, int(sys.argv[2]) if len(sys.argv) > 2 else 0).start()
    print(api.url, flush=True)
    try:
        api.thread.join()
    except KeyboardInterrupt:
        pass
