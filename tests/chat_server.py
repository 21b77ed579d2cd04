"""A real chat-completions HTTP server on 127.0.0.1 for the LLM tests (scripted or rule-based replies).

It speaks the part of the OpenAI protocol the client uses (``POST /v1/chat/completions``) and records
every request (headers and body). Replies come from a script, one entry per request, then from a
``model`` callable of the request's messages. A script entry is a :class:`Reply`: a status code, extra
headers, a delay before answering, and the assistant's content.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    error: str = "scripted error"


Model = Callable[[list[dict[str, str]]], str]


class ChatServer:
    def __init__(self, script: list[Reply] | None = None, model: Model | None = None) -> None:
        self.script = list(script or [])
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.requests.append({"path": self.path, "headers": headers, "body": body})
                    reply = server.script.pop(0) if server.script else None
                if reply is None:
                    reply = Reply(server.model(body["messages"]) if server.model else "{}")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    payload = {"error": {"message": reply.error, "type": "scripted"}}
                else:
                    payload = {"id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                               "created": int(time.time()), "model": body.get("model", "?"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": reply.content}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def chat_server(script: list[Reply] | None = None, model: Model | None = None) -> Iterator[ChatServer]:
    with ChatServer(script, model) as s:
        yield s


# ---------------------------------------------------------------------------------------------- a rule-based model
_NUM = r"(-?\d+(?:\.\d+)?)"


def _side(text: str) -> float:
    """'12 deg left' -> 12, '12 deg right' -> -12, 'dead ahead' -> 0."""
    m = re.match(rf"{_NUM} deg (left|right)", text.strip())
    return 0.0 if m is None else float(m.group(1)) * (1 if m.group(2) == "left" else -1)


def rescue_model(messages: list[dict[str, str]]) -> str:
    """Answers from the goal and observation lines of the last prompt by fixed rules (squares up to each
    feature, crawls through debris (half way in when the goal is to enter it), climbs the step, turns to
    the victim and walks up to it, sits beside it)."""
    prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    line = re.findall(r"Observation: (.*)", prompt)[-1]
    goal = (re.findall(r"Goal: (.*)", prompt) or [""])[-1]
    parts = {p.split(" ")[0]: p for p in line.split("; ")}

    def act(name: str, **params: float) -> str:
        return json.dumps({"action": name, "params": {k: round(v, 2) for k, v in params.items()}})

    def turn(deg: float) -> str:
        return act("turn_left" if deg > 0 else "turn_right", degrees=abs(deg))

    m = re.search(rf"inside the debris field, {_NUM} m to its far edge \(normal (.*?)\)", line)
    if m:
        return act("crawl_forward", distance_m=float(m.group(1)) + 0.15)
    ahead = []
    m = re.search(rf"debris field {_NUM} m ahead, {_NUM} m deep \(normal (.*?)\)", line)
    if m:
        ahead.append((float(m.group(1)), "debris", float(m.group(2)), _side(m.group(3))))
    m = re.search(rf"step {_NUM} m ahead \(normal (.*?)\)", line)
    if m:
        ahead.append((float(m.group(1)), "step", 0.0, _side(m.group(2))))
    if ahead:
        edge, kind, depth, normal = min(ahead)
        if abs(normal) > 10:
            return turn(normal)
        if edge <= 0.5:
            if kind == "step":
                return act("climb_step")
            return act("crawl_forward", distance_m=edge + (0.5 * depth + 0.3 if "enter" in goal else depth + 0.6))
        return act("walk_forward", distance_m=edge - 0.3)
    v = re.search(rf"victim {_NUM} m, (.*?)$", parts["victim"])
    assert v is not None
    dist, bearing = float(v.group(1)), _side(v.group(2))
    if dist < 0.9:
        return act("sit")
    if abs(bearing) > 8:
        return turn(bearing)
    return act("walk_forward", distance_m=dist - 0.4)
