"""Marketo's response shapes and the simulator's request log.

JSON answers carry ``application/json;charset=UTF-8`` (docs/reference/marketo-api.md §1.1); errors
are HTTP 200 with ``success: false`` (§5); gateway failures and 413 have HTML bodies (§8.3, §8.9); a
missing failures/warnings file is a plain-text 404 (§8.6). Every Marketo call gets a request-log
entry recording where its token was sent (§8.2, §8.10).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from orchestrator.simulator.engine import Instance, Simulator
from orchestrator.simulator.errors import ApiError

#: Content type of every JSON answer (docs/reference/marketo-api.md §1.1).
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
#: Content type of failures and warnings files (docs/reference/marketo-api.md §3.2).
CSV_CONTENT_TYPE = "text/csv;charset=UTF-8"
#: The request-log entry of the request being handled.
ENTRY_KEY = web.RequestKey("sim_entry", dict)
#: The Marketo error code a response carries, for the request log.
CODE_KEY = web.ResponseKey("sim_code", str)


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    """A JSON response with Marketo's exact content type."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers={"Content-Type": JSON_CONTENT_TYPE},
    )


def ok(sim: Simulator, result: list[dict[str, Any]]) -> web.Response:
    """Return ``{"requestId", "result": [...], "success": true}``.

    See docs/reference/marketo-api.md §2.2.
    """
    return json_response({"requestId": sim.request_id(), "result": result, "success": True})


def error(sim: Simulator, inst: Instance, exc: ApiError) -> web.Response:
    """HTTP 200 ``{"requestId", "success": false, "errors": [{code, message}]}``; counted."""
    inst.errors[exc.code] += 1
    body = {
        "requestId": sim.request_id(),
        "success": False,
        "errors": [{"code": exc.code, "message": exc.message}],
    }
    response = json_response(body)
    response[CODE_KEY] = exc.code
    return response


def html(status: int, title: str) -> web.Response:
    """An nginx-style HTML error page, as a gateway would send (§8.9, 413)."""
    text = f"<html><head><title>{status} {title}</title></head><body><center><h1>{status} "
    text += f"{title}</h1></center><hr><center>nginx</center></body></html>\n"
    return web.Response(text=text, status=status, content_type="text/html")


HTTP_TITLES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def too_large(inst: Instance) -> web.Response:
    """HTTP 413 with an HTML body for a body over ``max_body_bytes`` (§8.3); counted as "413"."""
    inst.errors["413"] += 1
    return html(413, "Request Entity Too Large")


def not_found_file() -> web.Response:
    """The plain-text 404 of a failures/warnings file that does not exist (§8.6)."""
    return web.Response(text="404 Not Found\n", status=404, content_type="text/plain")


def log_request(
    sim: Simulator, inst: Instance, request: web.Request, endpoint: str
) -> dict[str, Any]:
    """Append a request-log entry (``GET /_sim/requests``) and count the call by endpoint.

    The entry's ``status``, ``code``, ``form_keys`` and ``token_in`` are completed as the
    request is handled.
    """
    auth = request.headers.get("Authorization")
    entry: dict[str, Any] = {
        "t": sim.now(),
        "method": request.method,
        "path": request.path,
        "instance": inst.munchkin_id,
        "endpoint": endpoint,
        "query_keys": sorted(request.query.keys()),
        "form_keys": [],
        "auth_header": auth is not None,
        "auth_scheme": auth.split(" ", 1)[0] if auth else None,
        "token_in_query": "access_token" in request.query,
        "token_in": token_places(inst, request),
        "status": None,
        "code": None,
    }
    inst.requests.append(entry)
    inst.calls[endpoint] += 1
    return entry


def known_tokens(inst: Instance) -> list[str]:
    """The instance's newest tokens (the current one and a few expired ones)."""
    return list(inst.recent_tokens)


def token_places(inst: Instance, request: web.Request) -> list[str]:
    """Where any token of this instance appears: ``header:NAME``, ``query:KEY``, ``path``."""
    tokens = known_tokens(inst)
    if not tokens:
        return []
    places = [f"header:{k}" for k, v in request.headers.items() if any(t in v for t in tokens)]
    places += [f"query:{k}" for k, v in request.query.items() if any(t in v for t in tokens)]
    if any(t in request.path for t in tokens):
        places.append("path")
    return places
