"""A fake OpenAI + Anthropic HTTP API on 127.0.0.1, to run the real client libraries against.

    with FakeAPI() as api:
        OpenAIProvider(base_url=api.openai_url)      # http://127.0.0.1:PORT/v1
        AnthropicProvider(base_url=api.url)          # the SDK adds /v1/messages itself
        api.fail(429, headers={"retry-after": "7"})  # the next request gets this instead
        ...
        api.requests[-1]["body"]                     # what the client really sent

    api.inject_faults(0.2, seed=1)               # 20 % of requests meet a random transport fault
    api.outage = 500                             # every request fails with this status
    api.snapshots["gpt-x"] = "gpt-x-2025-01-01"  # the model a reply names for the one asked for
    api.served["tiny"] = "/models/tiny"          # GET /v1/models lists it with this root (as vLLM does)

Endpoints: POST /v1/chat/completions, /v1/completions (OpenAI) and /v1/messages (Anthropic).
The reply is "echo: " + the last user message (or the prompt), cut at the first stop
sequence and at max_tokens words; a token is a whitespace-separated word.
"""

from __future__ import annotations

import collections
import random
import socket
import struct
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions")
ANTHROPIC_PATH = "/v1/messages"

# The error `type` each API uses for a status.
OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                      404: "invalid_request_error", 429: "rate_limit_error"}
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         500: "api_error", 529: "overloaded_error"}


def openai_error(status: int, message: str) -> dict:
    kind = OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_error(status: int, message: str) -> dict:
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def api_key(headers: dict) -> str | None:
    """The key a request carried: `x-api-key`, or the token of `Authorization: Bearer`."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else None


def text_of(content) -> str:
    """A message's content: a string, or a list of parts/blocks with a `text`."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


def generate(source: str, max_tokens: int | None, stops) -> tuple[str, str | None, bool]:
    """The deterministic 'model': (text, the stop sequence it ended on, truncated?)."""
    text, hit = "echo: " + source, None
    for stop in [stops] if isinstance(stops, str) else stops or []:
        at = text.find(stop)
        if at >= 0 and (hit is None or at < text.find(hit)):
            hit = stop
    if hit is not None:
        text = text[: text.find(hit)]
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), None, True
    return text, hit, False


def count(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def openai_reply(path: str, body: dict, snapshots: dict | None = None) -> tuple[int, dict]:
    model = body.get("model")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if path == "/v1/chat/completions":
        messages = body.get("messages")
        if not model or not messages:
            return 400, openai_error(400, "you must provide a model and messages")
        users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        text, _, truncated = generate(users[-1] if users else "", max_tokens, body.get("stop"))
        prompt_tokens = count(*(text_of(m.get("content")) for m in messages))
        choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                  "logprobs": None, "finish_reason": "length" if truncated else "stop"}
        obj, prefix = "chat.completion", "chatcmpl-"
    else:
        prompt = body.get("prompt")
        if not model or prompt is None:
            return 400, openai_error(400, "you must provide a model and a prompt")
        prompt = prompt if isinstance(prompt, str) else prompt[0]
        text, _, truncated = generate(prompt, max_tokens, body.get("stop"))
        prompt_tokens = count(prompt)
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "length" if truncated else "stop"}
        obj, prefix = "text_completion", "cmpl-"
    completion_tokens = count(text)
    return 200, {
        "id": prefix + uuid.uuid4().hex[:12],
        "object": obj,
        "created": int(time.time()),
        "model": (snapshots or {}).get(model, model),   # like the real APIs: the snapshot that answered
        "system_fingerprint": "fp_fake",
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def anthropic_reply(body: dict, snapshots: dict | None = None) -> tuple[int, dict]:
    model, messages = body.get("model"), body.get("messages")
    if not model or not messages or not isinstance(body.get("max_tokens"), int):
        return 400, anthropic_error(400, "model, messages and max_tokens are required")
    for i, m in enumerate(messages):  # like the real API: no system turns in `messages`
        if m.get("role") not in ("user", "assistant"):
            return 400, anthropic_error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
    users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    text, hit, truncated = generate(users[-1] if users else "", body["max_tokens"], body.get("stop_sequences"))
    system = text_of(body.get("system"))
    return 200, {
        "id": "msg_" + uuid.uuid4().hex[:12],
        "type": "message",
        "role": "assistant",
        "model": (snapshots or {}).get(model, model),   # like the real APIs: the snapshot that answered
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if truncated else "stop_sequence" if hit else "end_turn",
        "stop_sequence": hit,
        "usage": {"input_tokens": count(system, *(text_of(m.get("content")) for m in messages)),
                  "output_tokens": count(text)},
    }


FAULTS = ("429", "500", "503", "hang", "malformed", "truncated", "reset")


class FakeAPI:
    """The server; a context manager. `requests` holds every request received, in order:
    {"path", "headers" (names lower-cased), "body" (the parsed JSON)}; `answered` the
    canonical body of every request whose full, valid 200 reply was sent."""

    def __init__(self, delay: float = 0.0):
        self.requests: list[dict] = []
        self.answered: list[str] = []
        self.faults: collections.Counter = collections.Counter()  # injected faults by kind
        self.delay = delay  # seconds to wait before each reply (latency, or to provoke client timeouts)
        self.hang_seconds = 5.0  # a "hang" fault holds the connection this long, then drops it
        self.outage: int | None = None  # answer every request with this status
        self.snapshots: dict[str, str] = {}  # requested model -> the model the reply names (an alias resolved)
        self.served: dict[str, str] = {}  # model id -> the weights' root, listed by GET /v1/models
        self._fault_rate = 0.0
        self._fault_kinds = FAULTS
        self._rng = random.Random(0)
        self._failures: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True  # a handler still sleeping must not block shutdown
        self._server.request_queue_size = 128  # many concurrent clients (the benchmark)
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    def inject_faults(self, rate: float, kinds=FAULTS, seed: int = 0) -> None:
        """From now on each request meets one of `kinds` with probability `rate`:
        429 (Retry-After 0), 500, 503, a hang past the client's timeout, a 200 whose body is
        not JSON, a 200 whose body stops half way, or a connection reset without a reply."""
        with self._lock:
            self._fault_rate, self._fault_kinds, self._rng = rate, tuple(kinds), random.Random(seed)

    def answered_twice(self) -> list[str]:
        return [body for body, n in collections.Counter(self.answered).items() if n > 1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def fail(self, status: int, message: str | None = None, headers: dict | None = None, body=None):
        """Answer the next request with this error instead (queued, one request each).
        Without `body`, the error is written in the requested API's own error format."""
        with self._lock:
            self._failures.append((status, message or f"fake error {status}", headers or {}, body))

    def __enter__(self) -> "FakeAPI":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _fault(self) -> str | None:
        with self._lock:
            if self._fault_rate and self._rng.random() < self._fault_rate:
                kind = self._rng.choice(self._fault_kinds)
                self.faults[kind] += 1
                return kind
        return None

    def _answer(self, path: str, headers: dict, raw: bytes) -> tuple[int, dict, dict | str]:
        """(status, extra headers, body) for one request."""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            failure = self._failures.popleft() if self._failures else None
        is_anthropic = path == ANTHROPIC_PATH
        error = anthropic_error if is_anthropic else openai_error
        if failure is not None:
            status, message, extra, canned = failure
            return status, extra, canned if canned is not None else error(status, message)
        if self.outage is not None:
            return self.outage, {}, error(self.outage, "the service is down")
        if path not in OPENAI_PATHS and not is_anthropic:
            return 404, {}, error(404, f"no such endpoint: {path}")
        if not isinstance(body, dict):
            return 400, {}, error(400, "the body must be a JSON object")
        status, reply = anthropic_reply(body, self.snapshots) if is_anthropic else openai_reply(path, body, self.snapshots)
        return status, {}, reply


def _handler(api: FakeAPI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect; we always send Content-Length
        # headers and body go out as separate writes: with Nagle's algorithm on, the body waits
        # for the client's delayed ACK (~40 ms a reply), which real API servers do not add
        disable_nagle_algorithm = True

        def do_GET(self):
            if self.path != "/v1/models":
                self.send_error(404)
                return
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "vllm", "root": root}
                      for m, root in api.served.items()]
            data = json.dumps({"object": "list", "data": models}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, extra, body = api._answer(self.path, headers, raw)
            fault = api._fault() if status == 200 else None
            if api.delay:
                time.sleep(api.delay)
            if fault in ("429", "500", "503"):
                status, extra = int(fault), {"retry-after": "0"} if fault == "429" else {}
                body = (anthropic_error if self.path == ANTHROPIC_PATH else openai_error)(status, f"injected {fault}")
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            if fault == "hang":
                time.sleep(api.hang_seconds)
                self.close_connection = True
                return
            if fault == "reset":  # RST instead of a reply
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            length = len(data)
            if fault == "malformed":
                data = data[: len(data) // 2]  # cut inside the JSON, but a complete HTTP reply
                length = len(data)
            elif fault == "truncated":
                data = data[: len(data) // 2]  # fewer bytes than Content-Length promises
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(length))
                self.send_header("request-id" if self.path == ANTHROPIC_PATH else "x-request-id", "req_fake")
                for name, value in extra.items():
                    self.send_header(name, str(value))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.close_connection = True
                return
            if fault == "truncated":
                self.close_connection = True
            elif status == 200 and fault is None:
                with api._lock:
                    api.answered.append(json.dumps({"path": self.path, "body": json.loads(raw)}, sort_keys=True))

        def log_message(self, *args):  # keep the test output quiet
            pass

    return Handler
