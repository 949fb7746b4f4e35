"""The installer's live page: a Starlette app served by uvicorn on a thread of its own.

The server only reads the :class:`~gate.preview.feed.PreviewFeed` the gate's loop fills; it draws
and JPEG-encodes the newest frame when a page asks for one, at most ``preview.fps`` times a second
however many pages are open. Frames live in memory only: never written to disk, never sent to
MQTT, and sent to the browser with ``Cache-Control: no-store``.

Access: bound to loopback unless ``preview.host`` says otherwise. A token (``preview.token_file``
or ``$MASKGATE_PREVIEW_TOKEN``), when set, is required on every request (``Authorization: Bearer``,
or the cookie that opening ``/?token=…`` sets); listening beyond loopback without one is a
configuration error. Each opening of the page is logged with who (address, browser) and when;
refused requests are logged too.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib.resources import files
from typing import Any

import cv2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gate.credentials import read_secret
from gate.errors import ConfigError, MaskgateError
from gate.preview.draw import annotated
from gate.preview.feed import PreviewFeed
from gate.settings import DetectorSettings, PreviewSettings, Settings

log = logging.getLogger(__name__)
logging.getLogger("uvicorn").setLevel(logging.WARNING)  # its start/stop lines: ours says where the page is

COOKIE = "maskgate_preview"
#: How long the gate waits for the server to listen, and for it to stop.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0
#: Openings of the page the panel lists, newest first.
OPENINGS_SHOWN = 5
#: Sent with every response: nothing cached, nothing framed, no referrer, scripts from here only.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
}
_PAGE = {name: (files("gate.preview") / "page" / name).read_bytes() for name in ("index.html", "preview.js", "preview.css")}
_TYPES = {"index.html": "text/html; charset=utf-8", "preview.js": "text/javascript; charset=utf-8", "preview.css": "text/css; charset=utf-8"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FrameRenderer:
    """The newest frame, drawn and JPEG-encoded on demand, at most ``fps`` times a second (cached between)."""

    def __init__(self, feed: PreviewFeed, fps: float, jpeg_quality: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._feed = feed
        self._min_interval = 0.9 / fps  # a page asking every 1/fps is never served a stale frame
        self._quality = jpeg_quality
        self._clock = clock
        self._cached: tuple[bytes, int, int] | None = None  # (jpeg, frame index, faces drawn)
        self._rendered_at = float("-inf")

    def jpeg(self) -> tuple[bytes, int, int] | None:
        """(JPEG bytes, frame index, number of faces drawn), or None before the first frame."""
        snapshot = self._feed.latest
        if snapshot is None:
            return None
        now = self._clock()
        fresh = self._cached is None or snapshot.frame.index != self._cached[1]
        if fresh and now - self._rendered_at >= self._min_interval:
            canvas = annotated(snapshot.frame.image, snapshot.faces, snapshot.ignored, self._feed.detector)
            ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self._quality])
            if ok:
                self._cached = (encoded.tobytes(), snapshot.frame.index, len(snapshot.faces))
                self._rendered_at = now
        return self._cached


class PreviewServer:
    """The live page on ``preview.host:preview.port``; a context manager: listening inside, stopped after."""

    def __init__(self, settings: PreviewSettings, detector: DetectorSettings, gate_id: str, *, token: str | None,
                 feed: PreviewFeed | None = None) -> None:
        if token is None and not is_loopback(settings.host):
            raise ConfigError(f"preview.host = {settings.host!r} listens beyond loopback: set a token "
                              f"(preview.token_file, or ${settings.token_env}), or use 127.0.0.1 and an SSH tunnel")
        self.settings = settings
        self.gate_id = gate_id
        self.feed = feed or PreviewFeed(detector)
        self.openings: deque[dict[str, str]] = deque(maxlen=OPENINGS_SHOWN)
        self._token = token
        self._frames = FrameRenderer(self.feed, settings.fps, settings.jpeg_quality)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = settings.port

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> PreviewServer:
        """The server ``[preview]`` describes, its token read (ConfigError before anything listens)."""
        preview = settings.preview
        token = read_secret("preview.token_file", preview.token_file, preview.token_env, environ)
        return cls(preview, settings.detector, settings.gate.id, token=token)

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}/"

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> PreviewServer:
        sock = self._bind()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_config=None, access_log=False, lifespan="off", server_header=False,
                                timeout_graceful_shutdown=int(STOP_TIMEOUT_S))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="preview", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.close()
            raise MaskgateError(f"preview: the server did not start on {self.url} within {START_TIMEOUT_S:.0f} s")
        log.info("preview: live page on %s (%s)", self.url, "token required" if self._token else "no token: loopback only")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening; open pages get no more frames. Safe to call twice."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT_S)
        self._server = self._thread = None

    def _bind(self) -> socket.socket:
        host, port = self.settings.host, self.settings.port
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ConfigError(f"preview.host: cannot listen on {host!r} ({exc.strerror or exc})") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"preview.port: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
        return sock

    # -- the web app ---------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [Route("/", self._index), Route("/frame.jpg", self._frame), Route("/status.json", self._status)]
        routes += [Route(f"/{name}", self._static(name)) for name in _PAGE if name != "index.html"]
        return Starlette(routes=routes)

    def _allowed(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), self._token.encode())

    def _refused(self, request: Request) -> Response:
        log.warning("preview: refused %s from %s: no valid token", request.url.path, _who(request))
        return PlainTextResponse("401: this page needs the preview token (open /?token=... once, or send Authorization: Bearer ...)\n",
                                 401, headers={**HEADERS, "WWW-Authenticate": 'Bearer realm="maskgate preview"'})

    async def _index(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None and self._token is not None and hmac.compare_digest(token.encode(), self._token.encode()):
            response = RedirectResponse("/", 303, headers=HEADERS)  # the token leaves the address bar and the history
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        if not self._allowed(request):
            return self._refused(request)
        opening = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"), "by": _who(request),
                   "browser": request.headers.get("user-agent", "unknown")[:200]}
        self.openings.appendleft(opening)
        log.info("preview: page opened by %s (%s)", opening["by"], opening["browser"], extra={"preview_opened_by": opening["by"]})
        return Response(_PAGE["index.html"], headers=HEADERS, media_type=_TYPES["index.html"])

    def _static(self, name: str) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            if not self._allowed(request):
                return self._refused(request)
            return Response(_PAGE[name], headers=HEADERS, media_type=_TYPES[name])

        return serve

    async def _frame(self, request: Request) -> Response:
        if not self._allowed(request):
            return self._refused(request)
        frame = self._frames.jpeg()
        if frame is None:
            return Response(status_code=204, headers=HEADERS)
        jpeg, index, faces = frame
        return Response(jpeg, media_type="image/jpeg", headers={**HEADERS, "X-Frame-Index": str(index), "X-Faces": str(faces)})

    async def _status(self, request: Request) -> Response:
        if not self._allowed(request):
            return self._refused(request)
        feed = self.feed
        return JSONResponse({
            "gate_id": self.gate_id,
            "door": feed.door,
            "camera_fps": round(feed.fps, 1),
            "stage_ms": {stage: round(ms, 1) for stage, ms in dict(feed.stage_ms).items()},
            "decisions": list(feed.decisions),
            "tuning": feed.tuning.report(),
            "page_fps": self.settings.fps,
            "opened": list(self.openings),
        }, headers=HEADERS)


def _who(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"
