"""The window's HTTP server: aiohttp on ``http.listen``, with a token and hard limits.

Routes (GET and HEAD only): ``/livez``, ``/readyz``, ``/metrics``, ``/api/status``,
``/api/files/{file_id}``, ``/api/files/{file_id}/{report.json|failures.csv|warnings.csv}``
and ``/`` (the page). Anything else is 404.

Safety:

- ``check_listen``: a listener on an address other than loopback needs ``http.token``
  (``ConfigError``, so ``leadflow run`` exits 2 with one line).
- With a token, every request must carry ``Authorization: Bearer <token>`` (compared in
  constant time); 401 otherwise. Nothing served carries the token or the client secret.
- A slow or hostile client cannot stall the daemon: at most `MAX_CONNECTIONS` connections
  (more are closed at once), `IDLE_TIMEOUT_S` to send a request (and between requests),
  `REQUEST_TIMEOUT_S` per request, header lines of at most `MAX_LINE_BYTES`, no request body
  (`MAX_BODY_BYTES`), and no access log (a flood cannot flood the journal).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Self

import structlog
from aiohttp import web

from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.settings import HttpSettings, is_loopback
from orchestrator.window import api
from orchestrator.window.page import (
    IN_FLIGHT_SHOWN,
    REFRESH_S,
    PageData,
    finished,
    in_flight,
    render_page,
)
from orchestrator.window.status import collect_status

log = structlog.get_logger(__name__)

#: Connections open at once; more are closed as soon as they are accepted.
MAX_CONNECTIONS = 64
#: Seconds a connection may stay idle before (and between) requests.
IDLE_TIMEOUT_S = 5.0
#: Seconds one request may take, response included; then 503.
REQUEST_TIMEOUT_S = 10.0
#: Longest request line and header line, bytes.
MAX_LINE_BYTES = 4096
#: Largest request body, bytes (every route is a GET).
MAX_BODY_BYTES = 1024
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; form-action 'none'",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_listen(http: HttpSettings) -> None:
    """Refuse a listener outside loopback without a token.

    Raises:
        ConfigError: ``http.token``: ``http.listen`` is not a loopback address and no token
            is set.
    """
    address = http.address
    if address is None or is_loopback(address[0]) or http.bearer is not None:
        return
    raise ConfigError(
        "http.token",
        f"required because http.listen ({http.listen}) is not a loopback address: set "
        "LEADFLOW_HTTP__TOKEN (or http.token), or listen on 127.0.0.1",
    )


class _Refused:
    """A protocol for a connection over the limit: closed as soon as it is made."""

    def connection_made(self, transport: Any) -> None:
        transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        return None

    def data_received(self, data: bytes) -> None:
        return None

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        return None

    def resume_writing(self) -> None:
        return None


class _LimitedSite(web.BaseSite):
    """A TCP site that closes connections beyond ``max_connections`` at once."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int):
        super().__init__(runner, backlog=128)
        self._host = host
        self._port = port
        self._max = max_connections
        self.refused = 0

    @property
    def name(self) -> str:
        """The URL of the site."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def _protocol(self) -> Any:
        server = self._runner.server
        assert server is not None
        if len(server.connections) >= self._max:
            self.refused += 1
            return _Refused()
        return server()

    async def start(self) -> None:
        """Listen (port 0: a free port, then known from `port`)."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host or None, self._port, backlog=self._backlog,
            reuse_address=True,
        )
        sockets = self._server.sockets
        if sockets:
            self._port = int(sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        """The port listened on."""
        return self._port


class HttpWindow:
    """The listener of one daemon (``async with HttpWindow(daemon, http): ...``).

    Args:
        daemon: what the window reads (``api.DaemonView``).
        http: the ``http`` settings.

    Raises:
        ConfigError: from ``__aenter__``: see `check_listen`.
        OrchestratorError: from ``__aenter__``: the address cannot be listened on (in use,
            not an address of this machine); the cause is chained.
    """

    def __init__(self, daemon: api.DaemonView, http: HttpSettings) -> None:
        self._daemon = daemon
        self._http = http
        self._runner: web.AppRunner | None = None
        self._site: _LimitedSite | None = None

    @property
    def url(self) -> str | None:
        """``http://host:port`` once listening, else None."""
        return self._site.name if self._site is not None else None

    @property
    def port(self) -> int | None:
        """The port listened on (the real one when ``listen`` asked for port 0)."""
        return self._site.port if self._site is not None else None

    @property
    def token_required(self) -> bool:
        """Whether requests need ``Authorization: Bearer``."""
        return self._http.bearer is not None

    @property
    def refused_connections(self) -> int:
        """Connections closed because `MAX_CONNECTIONS` were open."""
        return self._site.refused if self._site is not None else 0

    async def __aenter__(self) -> Self:
        check_listen(self._http)
        address = self._http.address
        if address is None:
            return self
        host, port = address
        self._runner = web.AppRunner(
            build_app(self._daemon, self._http.bearer),
            handle_signals=False,
            access_log=None,
            keepalive_timeout=IDLE_TIMEOUT_S,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        site = _LimitedSite(self._runner, host, port, MAX_CONNECTIONS)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OrchestratorError(
                f"cannot listen on http.listen {self._http.listen}: {exc.strerror or exc} "
                "(another process uses the port? set http.listen, or \"\" to turn it off)"
            ) from exc
        self._site = site
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None


def build_app(daemon: api.DaemonView, token: str | None) -> web.Application:
    """Return the aiohttp application of the window (routes, token, limits, headers)."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[_guard(token)],
    )
    routes = _Routes(daemon)
    app.router.add_get("/", routes.page)
    app.router.add_get("/livez", routes.livez)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/api/status", routes.status)
    app.router.add_get(r"/api/files/{file_id:\d{1,18}}", routes.file)
    app.router.add_get(
        r"/api/files/{file_id:\d{1,18}}/{name:report\.json|failures\.csv|warnings\.csv}",
        routes.download,
    )
    return app


def _guard(token: str | None) -> Any:
    """Middleware: the token, the per-request timeout and the security headers."""
    expected = f"Bearer {token}".encode() if token is not None else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _with_headers(web.json_response(
                    {"error": "unauthorized", "message": "send Authorization: Bearer <token>"},
                    status=401, headers={"WWW-Authenticate": 'Bearer realm="leadflow"'},
                ))
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                response = await handler(request)
        except web.HTTPException as exc:
            response = web.json_response(
                {"error": exc.reason.lower().replace(" ", "_")}, status=exc.status
            )
        except TimeoutError:
            log.warning("http_request_timeout", path=request.path)
            response = web.json_response({"error": "timeout"}, status=503)
        return _with_headers(response)

    return guard


def _with_headers(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
    return response


class _Routes:
    """The handlers; each reads the daemon and never changes it."""

    def __init__(self, daemon: api.DaemonView) -> None:
        self._d = daemon

    async def livez(self, request: web.Request) -> web.StreamResponse:
        alive, body = api.liveness(self._d)
        return web.json_response(body, status=200 if alive else 503)

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        ready, body = await api.readiness(self._d)
        return web.json_response(body, status=200 if ready else 503)

    async def status(self, request: web.Request) -> web.StreamResponse:
        data = await collect_status(self._d.store, self._d.settings, self._d.clock())
        return web.json_response(data)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        now = self._d.clock()
        data = await collect_status(self._d.store, self._d.settings, now)
        body = self._d.metrics.render(data, api.live_of(self._d), now)
        return web.Response(body=body, headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"
        })

    async def file(self, request: web.Request) -> web.StreamResponse:
        view = await api.file_view(self._d.store, self._d.settings,
                                   int(request.match_info["file_id"]))
        if view is None:
            raise web.HTTPNotFound()
        return web.json_response(view)

    async def download(self, request: web.Request) -> web.StreamResponse:
        file = await self._d.store.get_file(int(request.match_info["file_id"]))
        name = request.match_info["name"]
        if file is None:
            raise web.HTTPNotFound()
        path = await asyncio.to_thread(api.report_path, self._d.settings, file, name)
        if path is None:
            raise web.HTTPNotFound()
        kind = api.REPORT_FILES[name]
        # CSV files download (to open in a spreadsheet); report.json shows in the browser.
        # The file name carries only the id: nothing of the (operator-chosen) source name.
        how = "attachment" if kind == "text/csv" else "inline"
        return web.FileResponse(path, headers={
            "Content-Type": f"{kind}; charset=utf-8",
            "Content-Disposition": f'{how}; filename="leadflow-{file.id}-{name}"',
        })

    async def page(self, request: web.Request) -> web.StreamResponse:
        try:
            refresh = min(max(int(request.query.get("refresh", REFRESH_S)), 1), 3600)
        except ValueError:
            refresh = REFRESH_S
        now = self._d.clock()
        status = await collect_status(self._d.store, self._d.settings, now)
        _, ready = await api.readiness(self._d)
        progress = {}
        for f in in_flight(status)[:IN_FLIGHT_SHOWN]:
            progress[f["id"]], _ = await api.file_progress(self._d.store, f["id"])
        reports: dict[int, dict[str, str]] = {}
        for f in finished(status):
            record = await self._d.store.get_file(f["id"])
            if record is not None:
                reports[f["id"]] = await asyncio.to_thread(
                    api.report_links, self._d.settings, record
                )
        data = PageData(status, api.live_of(self._d), ready, progress, reports, now)
        return web.Response(text=render_page(data, refresh), content_type="text/html",
                            charset="utf-8")
