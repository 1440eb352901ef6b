"""A scripted, OpenAI-compatible chat-completions server for offline tests.

Stdlib only. Start one per test (see the ``fake_llm`` fixture in conftest.py),
point the product at ``fake.base_url`` and script what the "model" answers::

    fake.script("first answer", Reply(status=429, headers={"Retry-After": "1"}), "after retry")
    fake.responder = lambda body: Reply(content=body["messages"][-1]["content"].upper())

Replies are taken from the FIFO queue first, then from ``responder`` (called
with the parsed request body), then ``default``.

Served endpoints (any prefix is accepted, normally ``/v1``):

* ``GET  .../models``            -> model list (or an error with ``models_status``)
* ``POST .../chat/completions``  -> scripted reply, JSON or SSE (``"stream": true``)
* anything else                  -> 404 JSON error

Every request, including ``GET /v1/models``, is recorded in ``fake.requests``.
Times in ``RecordedRequest`` come from ``time.monotonic()``.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLLM", "RecordedRequest", "Reply"]


@dataclass
class Reply:
    """One scripted answer of the fake model.

    With ``tool_call`` set the reply carries ``tool_calls`` and finish_reason
    ``"tool_calls"``; its ``content`` is sent as ``null`` unless it was changed
    from the default ``"ok"`` (then the text is sent alongside the tool call).
    """

    content: str = "ok"
    reasoning: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = "scripted error"
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_size: int = 20
    tool_call: tuple[str, str] | None = None
    usage: dict | None = None
    bad_bytes: bytes = b""  # sent raw (e.g. invalid UTF-8) at the start of the answer text, in JSON and SSE alike


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict | None  # parsed JSON body (None when absent / not a JSON object)
    started: float  # time.monotonic() when the request line arrived
    finished: float | None  # time.monotonic() when the response was fully written
    raw_body: bytes = b""
    # Streamed answers only: (time.monotonic() just after the write, the text) of each SSE content piece, in order,
    # so a benchmark can tell when a given part of the answer left the server.
    sent: list[tuple[float, str]] = field(default_factory=list)


_ERROR_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def _error_body(status: int, message: str) -> dict:
    fallback = ("server_error", "server_error") if status >= 500 else ("api_error", "error")
    etype, code = _ERROR_TYPES.get(status, fallback)
    return {"error": {"message": message, "type": etype, "code": code, "param": None}}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_BAD_MARK = "@@fake-llm-bad-bytes@@"


def _splice_bad_bytes(data: bytes, bad: bytes) -> bytes:
    """Replace the first marker in serialized JSON by raw bytes that JSON could not carry (invalid UTF-8)."""
    return data.replace(_BAD_MARK.encode(), bad, 1) if bad else data


def _chunks(text: str, size: int) -> list[str]:
    size = max(1, int(size))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _message_chars(body: dict | None) -> int:
    total = 0
    for msg in (body or {}).get("messages") or []:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(part["text"])
                elif isinstance(part, str):
                    total += len(part)
    return total


class _Aborted(Exception):
    """The server is closing; drop the connection without answering."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() must not wait for slow handlers
    allow_reuse_address = True
    fake: FakeLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing -----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence logging
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_reason(status)}\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _send_json(self, status: int, payload: Any, extra_headers: dict[str, str] | None = None) -> None:
        """Send a complete response in ONE write (no Nagle / delayed-ACK stall)."""
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        headers.update(extra_headers or {})
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers.items()):
            self.close_connection = True
        self._write_last(self._head(status, headers) + body)

    def _send_raw_json(self, status: int, body: bytes, extra_headers: dict[str, str] | None = None) -> None:
        """Like _send_json, for a body already serialized (possibly with raw bytes spliced in)."""
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        headers.update(extra_headers or {})
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers.items()):
            self.close_connection = True
        self._write_last(self._head(status, headers) + body)

    def _write_last(self, data: bytes) -> None:
        """Write the final bytes of a response.

        Bookkeeping (``finished``, ``in_flight``) is done just *before* the write, so
        a client that has received its response always sees it accounted for.
        """
        self._done()
        self.wfile.write(data)

    def _done(self) -> None:
        rec = getattr(self, "_rec", None)
        if rec is not None:
            self._rec = None
            rec.finished = time.monotonic()
            if self._is_chat:
                self.server.fake._leave()

    # -- routing ------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        started = time.monotonic()
        raw = self._read_body() if method == "POST" else b""
        body: dict | None = None
        if raw:
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except ValueError:
                body = None
        path = self.path.split("?", 1)[0]
        rec = RecordedRequest(
            method=method,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            started=started,
            finished=None,
            raw_body=raw,
        )
        is_chat = method == "POST" and path.rstrip("/").endswith("/chat/completions")
        self._rec, self._is_chat = rec, is_chat
        fake._record(rec)
        if is_chat:
            fake._enter()
        try:
            if is_chat:
                self._chat(body or {})
            elif method == "GET" and path.rstrip("/").endswith("/models"):
                self._models()
            else:
                self._send_json(404, _error_body(404, f"no route for {method} {path}"))
        except _Aborted:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        except Exception as exc:  # a broken responder etc.: surface it instead of hanging the client
            fake.errors.append(exc)
            self.close_connection = True
            try:
                self._send_json(500, _error_body(500, f"fake_llm internal error: {exc!r}"), {"Connection": "close"})
            except OSError:
                pass
        finally:
            self._done()  # no-op unless the response was aborted / never completed

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    # -- endpoints ----------------------------------------------------------------

    def _models(self) -> None:
        fake = self.server.fake
        status = fake.models_status
        if status >= 400:
            self._send_json(status, _error_body(status, "scripted models error"))
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models]
        self._send_json(status, {"object": "list", "data": data})

    def _chat(self, body: dict) -> None:
        fake = self.server.fake
        reply = fake._next_reply(body)
        fake._sleep(reply.delay)
        if reply.status >= 400:
            self._send_json(reply.status, _error_body(reply.status, reply.error_message), reply.headers)
            return

        n = fake._next_id()
        completion_id = f"chatcmpl-fake-{n}"
        created = int(time.time())
        model = body.get("model") or (fake.models[0] if fake.models else "fake-model")
        content: str | None = reply.content
        if reply.bad_bytes:
            content = _BAD_MARK + (content or "")
        tool_calls = None
        finish_reason = reply.finish_reason
        if reply.tool_call is not None:
            name, arguments = reply.tool_call
            tool_calls = [
                {"id": f"call_fake_{n}", "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
            if reply.content in ("", Reply.content):
                content = None
            if finish_reason == "stop":
                finish_reason = "tool_calls"

        if reply.usage is not None:
            usage = dict(reply.usage)
        else:
            prompt = max(1, _message_chars(body) // 4)
            produced = len(reply.content) if content else (len(reply.tool_call[1]) if reply.tool_call else 0)
            completion = max(1, produced // 4)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if reply.reasoning is not None:
                message["reasoning"] = reply.reasoning
            if tool_calls:
                message["tool_calls"] = tool_calls
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
                "usage": usage,
            }
            if reply.bad_bytes:
                self._send_raw_json(
                    200, _splice_bad_bytes(json.dumps(payload).encode(), reply.bad_bytes), reply.headers
                )
                return
            self._send_json(200, payload, reply.headers)
            return

        # -- streaming (SSE) --
        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }

        events: list[dict] = [chunk({"role": "assistant", "content": ""})]
        for piece in _chunks(reply.reasoning or "", reply.chunk_size):
            events.append(chunk({"reasoning": piece}))
        pieces = _chunks(reply.content or "", reply.chunk_size) if content else []
        if reply.bad_bytes:
            pieces = [_BAD_MARK + (pieces[0] if pieces else "")] + pieces[1:]
        for piece in pieces:
            events.append(chunk({"content": piece}))
        if tool_calls:
            call = tool_calls[0]
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in _chunks(call["function"]["arguments"], reply.chunk_size):
                events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        events.append(chunk({}, finish_reason))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage:
            events.append(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )

        self.close_connection = True
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "close"}
        headers.update({k: v for k, v in reply.headers.items() if k.lower() not in ("content-length", "connection")})
        # Head and first event go out together; every later event is its own write.
        first = True
        rec = self._rec
        for event in events:
            data = b"data: " + _splice_bad_bytes(json.dumps(event).encode(), reply.bad_bytes) + b"\n\n"
            if first:
                self.wfile.write(self._head(200, headers) + data)
                first = False
            else:
                fake._sleep(reply.chunk_delay)
                self.wfile.write(data)
            piece = (event["choices"] or [{}])[0].get("delta", {}).get("content")
            if piece and rec is not None:
                rec.sent.append((time.monotonic(), piece))
        fake._sleep(reply.chunk_delay)
        self._write_last(b"data: [DONE]\n\n")


class FakeLLM:
    """Scripted OpenAI-compatible server on 127.0.0.1:<random port>."""

    def __init__(self, models: Sequence[str] = ("fake-model",)) -> None:
        self.models: list[str] = list(models)
        self.requests: list[RecordedRequest] = []
        self.responder: Callable[[dict], Reply | str] | None = None
        self.default: Reply = Reply()
        self.models_status: int = 200
        self.max_in_flight: int = 0
        self.in_flight: int = 0
        self.errors: list[BaseException] = []  # exceptions raised while serving (e.g. by responder)
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = 0
        self._conns: set[socket.socket] = set()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> FakeLLM:
        if self._server is not None:
            return self
        self._closing.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, args=(server,), name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def _serve(self, server: _Server) -> None:
        # Like serve_forever(), but woken instantly by close() instead of polling.
        with selectors.DefaultSelector() as sel:
            sel.register(server, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing.is_set():
                for key, _ in sel.select():
                    if key.fileobj is server and not self._closing.is_set():
                        server._handle_request_noblock()  # accept + spawn a handler thread

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()  # stops the accept loop; wakes handlers sleeping in delay / chunk_delay
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        server.server_close()
        self._wake_r.close()
        self._wake_w.close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:  # unblock handlers waiting on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeLLM is not running; call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ----------------------------------------------------------------

    def script(self, *replies: Reply | str) -> None:
        with self._lock:
            for r in replies:
                self._queue.append(Reply(content=r) if isinstance(r, str) else r)

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            reqs = list(self.requests)
        return [
            r for r in reqs if r.method == "POST" and r.path.split("?", 1)[0].rstrip("/").endswith("/chat/completions")
        ]

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget queue, requests, counters, responder, default and models_status; keep serving."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.errors.clear()
            self.max_in_flight = 0
            self.responder = None
            self.default = Reply()
            self.models_status = 200

    # -- used by the handler ------------------------------------------------------

    def _next_reply(self, body: dict) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        if responder is not None:
            r = responder(body)
            return Reply(content=r) if isinstance(r, str) else r
        return self.default

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _sleep(self, seconds: float) -> None:
        if self._closing.is_set():
            raise _Aborted
        if seconds > 0 and self._closing.wait(seconds):
            raise _Aborted
