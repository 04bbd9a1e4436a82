"""A real HTTP server on 127.0.0.1 for download tests: serves bytes the test makes, misbehaves on request.

Used by ``test_hub_*.py`` and ``test_models_*.py`` (imported as a plain module; pytest puts ``tests/`` on
``sys.path``). Nothing here touches the network beyond the loopback interface.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    """How the server answers for one path."""

    status: int | None = None  # e.g. 404: answer this instead of the file
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    cut_after: int | None = None  # close the connection after this many body bytes...
    cut_times: int = 1  # ...on this many responses (then behave)
    delay: float = 0.0  # seconds to wait before the body (lets concurrent clients overlap)


@dataclass
class Request:
    path: str
    range: str | None


@dataclass
class FileServer:
    """Files by URL path, what to do with each, and every request seen."""

    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes, **behaviour) -> str:
        """Serve *data* at *path*; return its URL."""
        self.files["/" + path.lstrip("/")] = data
        self.behaviour["/" + path.lstrip("/")] = Behaviour(**behaviour)
        return self.url(path)

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == "/" + path.lstrip("/")]


def _handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            with state.lock:
                state.requests.append(Request(self.path, self.headers.get("Range")))
                behaviour = state.behaviour.get(self.path, Behaviour())
                data = state.files.get(self.path)
                cut = behaviour.cut_after if behaviour.cut_after is not None and behaviour.cut_times > 0 else None
                if cut is not None:
                    behaviour.cut_times -= 1
            if data is None or behaviour.status is not None:
                self.send_error(behaviour.status or 404)
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and not behaviour.ignore_range:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


def start_server() -> tuple[FileServer, ThreadingHTTPServer]:
    state = FileServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_rrdbnet_pth() -> bytes:
    """A BasicSR-layout Real-ESRGAN-style checkpoint of a tiny x4 RRDBNet, as ``{"params_ema": ...}``."""
    import torch

    from restorekit.plugins import registry

    torch.manual_seed(0)
    net = registry("generators").build("rrdbnet", num_features=8, num_blocks=1, growth_channels=4, scale=4)
    buffer = io.BytesIO()
    torch.save({"params_ema": net.state_dict()}, buffer)
    return buffer.getvalue()
