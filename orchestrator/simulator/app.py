"""The Marketo-facing HTTP surface: identity, bulk imports, status, files, describes.

Every API call goes through one gate (`_api`): request log, injected HTTP failure, token check
(header only, docs/reference/marketo-api.md §8.2), injected API fault, limits (§8.3), latency, then
the endpoint. Instances are chosen by an optional ``/<munchkinId>`` URL prefix (§8.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from orchestrator.simulator import errors
from orchestrator.simulator.config import MUNCHKIN_PATTERN, STRING_TYPES
from orchestrator.simulator.csvparse import parse_header_params, parse_multipart, render_report
from orchestrator.simulator.engine import Instance, Simulator
from orchestrator.simulator.errors import ApiError
from orchestrator.simulator.jobs import Job, JobKind
from orchestrator.simulator.responses import (
    CODE_KEY,
    CSV_CONTENT_TYPE,
    ENTRY_KEY,
    HTTP_TITLES,
    error,
    html,
    json_response,
    known_tokens,
    log_request,
    not_found_file,
    ok,
    too_large,
)
from orchestrator.simulator.uploads import prepare_rows

#: Files larger than this (bytes) are parsed in a worker thread.
THREAD_PARSE_BYTES = 256 * 1024
#: Where the `Simulator` lives on the application.
SIMULATOR_KEY = web.AppKey("simulator", Simulator)

_PREFIX = "/{munchkin:" + MUNCHKIN_PATTERN + "}"
_Impl = Callable[[web.Request, Simulator, Instance], Awaitable[web.StreamResponse]]


def _instance(request: web.Request) -> tuple[Simulator, Instance]:
    sim = request.app[SIMULATOR_KEY]
    inst = sim.instance(request.match_info.get("munchkin"))
    if inst is None:
        raise web.HTTPNotFound(text="unknown instance\n")
    return sim, inst


def _api(endpoint: str, impl: _Impl, *, upload: bool = False) -> Callable[
    [web.Request], Awaitable[web.StreamResponse]
]:
    async def handler(request: web.Request) -> web.StreamResponse:
        sim, inst = _instance(request)
        entry = log_request(sim, inst, request, endpoint)
        request[ENTRY_KEY] = entry
        response = await _gate(request, sim, inst, impl, upload)
        entry["status"] = response.status
        entry["code"] = response.get(CODE_KEY)
        return response

    return handler


async def _gate(
    request: web.Request, sim: Simulator, inst: Instance, impl: _Impl, upload: bool
) -> web.StreamResponse:
    if upload and (request.content_length or 0) > sim.config.max_body_bytes:
        return too_large(inst)
    http_fault = sim.roll_http_fault()
    if http_fault is not None:
        inst.errors[str(http_fault)] += 1
        return html(http_fault, HTTP_TITLES[http_fault])
    try:
        sim.check_token(inst, request.headers.get("Authorization"))
        fault = sim.roll_api_fault()
        if fault is not None and not fault[1]:
            raise fault[0]
        sim.admit(inst)
    except ApiError as exc:
        return error(sim, inst, exc)
    try:
        delay = sim.latency()
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            raise fault[0]
        return await impl(request, sim, inst)
    except ApiError as exc:
        return error(sim, inst, exc)
    finally:
        sim.release(inst)


# ----- identity (§1.1, §8.2) ----------------------------------------------------------------


async def _method_not_allowed(request: web.Request) -> web.Response:
    raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])


async def identity(request: web.Request) -> web.Response:
    """``GET|POST /identity/oauth/token``: parameters from the query string or a form body."""
    sim, inst = _instance(request)
    entry = log_request(sim, inst, request, "identity")
    if sim.roll_identity_fault():
        inst.errors["502"] += 1
        entry["status"] = 502
        return html(502, HTTP_TITLES[502])
    params: dict[str, str] = {}
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    params.update(request.query)
    # The client id is not a secret: tests check which instance's credentials arrived here.
    entry["client_id"] = params.get("client_id")
    status, body = sim.identity(
        inst, params.get("grant_type"), params.get("client_id"), params.get("client_secret")
    )
    if status != 200:
        inst.errors[str(status)] += 1
    entry["status"] = status
    response = json_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


# ----- uploads (§2, §4, §8.3, §8.4) ------------------------------------------------------------


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """Read the body, never holding more than ``limit`` bytes; None when it is larger."""
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        if len(buf) + len(chunk) > limit:
            return None
        buf += chunk
    return bytes(buf)


def _upload(kind: JobKind) -> _Impl:
    async def impl(request: web.Request, sim: Simulator, inst: Instance) -> web.StreamResponse:
        content_type = request.headers.get("Content-Type", "")
        if parse_header_params(content_type)[0] != "multipart/form-data":
            raise ApiError.of(errors.INVALID_CONTENT_TYPE)
        body = await _read_limited(request, sim.config.max_body_bytes)
        if body is None:
            return too_large(inst)
        parts = parse_multipart(body, content_type)
        entry = request[ENTRY_KEY]
        entry["form_keys"] = sorted(parts)
        tokens = known_tokens(inst)
        entry["token_in"] += [
            f"form:{name}" for name, part in parts.items()
            if name != "file" and any(t.encode() in part.data for t in tokens)
        ]
        file = parts.pop("file", None)
        if file is None:
            raise ApiError.of(errors.INVALID_MULTIPART)
        params = {k: p.data.decode("utf-8", "replace") for k, p in parts.items()}
        params.update(request.query)
        target, delimiter = sim.check_upload(
            inst,
            kind,
            params,
            program_id=request.match_info.get("programId"),
            object_api_name=request.match_info.get("apiName"),
        )
        args = (sim.config, kind, target, delimiter, file.data)
        if len(file.data) > THREAD_PARSE_BYTES:
            # Keep answering other calls while a big file is parsed (the GIL is shared, but
            # the event loop gets a turn every few milliseconds instead of waiting ~0.3 s).
            prepared = await asyncio.to_thread(prepare_rows, *args)
        else:
            prepared = prepare_rows(*args)
        job = sim.enqueue_import(inst, kind, target, delimiter, prepared)
        dropped = sim.take_dropped_response(inst)
        if dropped:
            # The job is queued, but the client never sees the answer (docs/reference/marketo-api.md
            # §8.9); writing the response below fails quietly inside aiohttp.
            inst.errors["dropped"] += 1
            if request.transport is not None:
                request.transport.abort()
        if kind is JobKind.CUSTOM_OBJECT:
            result = {"batchId": job.batch_id, "status": "Queued",
                      "objectApiName": job.target.object_api_name}
        else:
            result = {"batchId": job.batch_id, "importId": str(job.batch_id), "status": "Queued"}
        response = ok(sim, [result])
        if dropped:
            response[CODE_KEY] = "dropped"  # the request log shows the answer never left
        return response

    return impl


# ----- status and files (§3, §4, §8.6) -------------------------------------------------------


def _status_result(job: Job) -> dict[str, Any]:
    message = job.message()
    if job.kind is JobKind.CUSTOM_OBJECT:
        end = job.finished_at
        if job.importing_at is None:
            elapsed = 0.0
        else:
            now_or_end = end if end is not None else job.importing_at + job.applied / job.rate
            elapsed = now_or_end - job.importing_at
        result: dict[str, Any] = {
            "batchId": job.batch_id,
            "operation": "import",
            "status": job.status.value,
            "objectApiName": job.target.object_api_name,
            "numOfObjectsProcessed": job.imported,
            "numOfRowsFailed": job.failed,
            "numOfRowsWithWarning": job.warned,
            "importTime": f"{round(elapsed)} second(s)",
        }
    else:
        result = {
            "batchId": job.batch_id,
            "importId": str(job.batch_id),
            "status": job.status.value,
            "numOfLeadsProcessed": job.imported,
            "numOfRowsFailed": job.failed,
            "numOfRowsWithWarning": job.warned,
        }
    if message is not None:
        result["message"] = message
    return result


def _status(kind: JobKind) -> _Impl:
    async def impl(request: web.Request, sim: Simulator, inst: Instance) -> web.StreamResponse:
        job = sim.job(inst, request.match_info["batchId"], (kind,))
        return ok(sim, [_status_result(job)])

    return impl


def _file(kind: JobKind, warnings: bool) -> _Impl:
    async def impl(request: web.Request, sim: Simulator, inst: Instance) -> web.StreamResponse:
        job = sim.job(inst, request.match_info["batchId"], (kind,))
        rows = job.warnings if warnings else job.failures
        if not job.terminal or not rows:
            return not_found_file()
        reason = "Import Warning Reason" if warnings else "Import Failure Reason"
        text = render_report(job.header, rows, job.delimiter, reason)
        return web.Response(
            body=text.encode("utf-8"), headers={"Content-Type": CSV_CONTENT_TYPE}
        )

    return impl


# ----- describe (§8.7) and unknown paths ---------------------------------------------------


async def _describe(request: web.Request, sim: Simulator, inst: Instance) -> web.StreamResponse:
    result: list[dict[str, Any]] = []
    for i, spec in enumerate(sim.config.lead_fields, start=1):
        item: dict[str, Any] = {"id": i, "displayName": spec.display_name,
                                "dataType": spec.data_type.value}
        if spec.data_type in STRING_TYPES:
            item["length"] = spec.length
        item["rest"] = {"name": spec.name, "readOnly": spec.read_only}
        result.append(item)
    return ok(sim, result)


#: Fields every custom object has besides its own (ADOC-co describe): read-only in imports.
_SYSTEM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("createdAt", "Created At", "datetime"),
    ("marketoGUID", "Marketo GUID", "string"),
    ("updatedAt", "Updated At", "datetime"),
)


async def _describe_object(
    request: web.Request, sim: Simulator, inst: Instance
) -> web.StreamResponse:
    """``GET /rest/v1/customobjects/{apiName}/describe.json`` (ADOC-co): the object's metadata.

    ``result[0]`` holds ``name``, ``displayName``, ``pluralName``, ``description``,
    ``createdAt``, ``updatedAt``, ``idField`` (``marketoGUID``), ``dedupeFields`` (one list:
    several members are a compound key), ``searchableFields`` (lists of lists),
    ``relationships`` and ``fields`` (``name``, ``displayName``, ``dataType``, ``length``,
    ``updateable``). An unknown object: ``1013`` "Object not found".
    """
    api_name = request.match_info["apiName"]
    spec = sim.config.custom_objects.get(api_name)
    if spec is None:
        raise ApiError.of(errors.OBJECT_NOT_FOUND)
    fields: list[dict[str, Any]] = []
    for name, display, data_type in _SYSTEM_FIELDS:
        item: dict[str, Any] = {"name": name, "displayName": display, "dataType": data_type,
                                "updateable": False}
        if data_type == "string":
            item["length"] = 36
        fields.append(item)
    for field in spec.fields:
        item = {"name": field.name, "displayName": field.display_name,
                "dataType": field.data_type.value, "updateable": not field.read_only}
        if field.data_type in STRING_TYPES:
            item["length"] = field.length
        fields.append(item)
    display = spec.display_name or api_name
    return ok(sim, [{
        "name": api_name,
        "displayName": display,
        "pluralName": f"{display}s",
        "description": display,
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "idField": "marketoGUID",
        "dedupeFields": list(spec.dedupe_fields),
        "searchableFields": [[name] for name in spec.dedupe_fields] + [["marketoGUID"]],
        "relationships": [],
        "fields": fields,
    }])


async def _unknown(request: web.Request, sim: Simulator, inst: Instance) -> web.StreamResponse:
    raise ApiError.of(errors.NOT_FOUND)


async def _wrong_method(
    request: web.Request, sim: Simulator, inst: Instance
) -> web.StreamResponse:
    raise ApiError.of(errors.METHOD_NOT_SUPPORTED)


def _add(app: web.Application, method: str, path: str, handler: Any) -> None:
    app.router.add_route(method, path, handler)
    app.router.add_route(method, _PREFIX + path, handler)


def add_marketo_routes(app: web.Application) -> None:
    """Register every Marketo endpoint at the root and under ``/<munchkinId>``."""
    _add(app, "GET", "/identity/oauth/token", identity)
    _add(app, "POST", "/identity/oauth/token", identity)
    _add(app, "*", "/identity/oauth/token", _method_not_allowed)
    lead, pm, co = JobKind.LEAD, JobKind.PROGRAM_MEMBER, JobKind.CUSTOM_OBJECT
    routes: list[tuple[str, str, str, _Impl]] = [
        ("POST", "/bulk/v1/leads.json", "import_lead", _upload(lead)),
        ("GET", "/bulk/v1/leads/batch/{batchId}.json", "lead_status", _status(lead)),
        ("GET", "/bulk/v1/leads/batch/{batchId}/failures.json", "lead_failures",
         _file(lead, False)),
        ("GET", "/bulk/v1/leads/batch/{batchId}/warnings.json", "lead_warnings",
         _file(lead, True)),
        ("POST", "/bulk/v1/program/{programId}/members/import.json", "import_program_member",
         _upload(pm)),
        ("GET", "/bulk/v1/program/members/import/{batchId}/status.json",
         "program_member_status", _status(pm)),
        ("GET", "/bulk/v1/program/members/import/{batchId}/failures.json",
         "program_member_failures", _file(pm, False)),
        ("GET", "/bulk/v1/program/members/import/{batchId}/warnings.json",
         "program_member_warnings", _file(pm, True)),
        ("POST", "/bulk/v1/customobjects/{apiName}/import.json", "import_custom_object",
         _upload(co)),
        ("GET", "/bulk/v1/customobjects/{apiName}/import/{batchId}/status.json",
         "custom_object_status", _status(co)),
        ("GET", "/bulk/v1/customobjects/{apiName}/import/{batchId}/failures.json",
         "custom_object_failures", _file(co, False)),
        ("GET", "/bulk/v1/customobjects/{apiName}/import/{batchId}/warnings.json",
         "custom_object_warnings", _file(co, True)),
        ("GET", "/rest/v1/leads/describe.json", "describe_lead", _describe),
        ("GET", "/rest/v1/customobjects/{apiName}/describe.json", "describe_custom_object",
         _describe_object),
    ]
    wrong_method = _api("unsupported_method", _wrong_method)
    for method, path, endpoint, impl in routes:
        _add(app, method, path, _api(endpoint, impl, upload=method == "POST"))
        _add(app, "*", path, wrong_method)  # only reached by other methods: 605
    for root in ("/rest/{tail:.*}", "/bulk/{tail:.*}"):
        _add(app, "*", root, _api("unknown", _unknown))
