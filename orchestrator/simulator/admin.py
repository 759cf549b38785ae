"""The simulator-only admin API under ``/_sim/`` (docs/reference/marketo-api.md §8.10).

Admin calls need no token and count toward no limit. Endpoints about one instance take
``?instance=<munchkinId>`` (default: the root instance). Bodies are JSON; times are simulated
epoch seconds (floats).

==========================================  ==================================================
``POST /_sim/reset`` ``{"settings": false}``  forget tokens, queue, batches, leads, statistics
                                              (every instance); ``true`` also restores the
                                              start-up settings -> ``{"ok": true}``
``GET /_sim/settings``                        the `SimulatorConfig` as JSON
``PATCH /_sim/settings`` ``{...}``            deep-merge (``{"faults": {"latency_s": 1}}``);
                                              -> new settings, or 400 ``{"error", "detail"}``
``POST /_sim/foreign-jobs``                   ``{"count": N, "duration_s": T}``: queue up to N
                                              foreign jobs (within the 10 limit), each importing
                                              T s -> ``{"added": n, "batchIds": [...]}``
``GET /_sim/stats``                           ``{"now", "iso", "time_scale", "instances":
                                              {munchkinId: Simulator.stats(...)}}``
``GET /_sim/leads[?email=]``                  ``[{"id", <fields>, "partitionName", "listIds"}]``
``GET /_sim/program-members/{programId}``     ``[{"leadId", "email", "status", <fields>}]``
``GET /_sim/custom-objects/{apiName}``        ``[{<fields>}]``
``GET /_sim/requests``                        ``[{"t", "method", "path", "instance", "endpoint",
                                              "query_keys", "form_keys", "auth_header",
                                              "auth_scheme", "token_in_query", "token_in",
                                              "status", "code"}]`` (last 10,000;
                                              identity calls add ``client_id``)
``GET /_sim/clock``                           ``{"now", "iso", "time_scale"}``
``POST /_sim/clock/advance``                  ``{"seconds": S}``: jump forward (any clock)
==========================================  ==================================================
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from orchestrator.simulator.app import SIMULATOR_KEY
from orchestrator.simulator.clock import iso
from orchestrator.simulator.engine import Instance, Simulator


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json"
    )


def _bad(message: str, detail: Any = None) -> web.Response:
    return _json({"error": message, "detail": detail}, 400)


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR_KEY]


def _inst(request: web.Request) -> Instance:
    sim = _sim(request)
    inst = sim.instance(request.query.get("instance"))
    if inst is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "unknown instance"}), content_type="application/json"
        )
    return inst


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body is not JSON"}), content_type="application/json"
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be an object"}), content_type="application/json"
        )
    return data


def _clock_view(sim: Simulator) -> dict[str, Any]:
    now = sim.now()
    return {"now": now, "iso": iso(now), "time_scale": getattr(sim.clock, "time_scale", None)}


async def reset(request: web.Request) -> web.Response:
    """``POST /_sim/reset`` ``{"settings": false}``: forget all state (and settings if true)."""
    body = await _body(request)
    _sim(request).reset(restore_settings=bool(body.get("settings", False)))
    return _json({"ok": True})


def _public_settings(config: Any) -> dict[str, Any]:
    """The configuration as JSON, with the client secret masked (it is a credential)."""
    data: dict[str, Any] = config.model_dump(mode="json")
    data["client_secret"] = "***"
    return data


async def get_settings(request: web.Request) -> web.Response:
    """``GET /_sim/settings``: the current `SimulatorConfig` as JSON (secret masked)."""
    return _json(_public_settings(_sim(request).config))


async def patch_settings(request: web.Request) -> web.Response:
    """``PATCH /_sim/settings``: deep-merge a partial config; 400 with errors when invalid."""
    body = await _body(request)
    try:
        config = _sim(request).update_settings(body)
    except ValidationError as exc:
        return _bad("invalid settings", json.loads(exc.json(include_url=False)))
    return _json(_public_settings(config))


async def foreign_jobs(request: web.Request) -> web.Response:
    """``POST /_sim/foreign-jobs`` ``{"count": N, "duration_s": T}``: queue foreign jobs."""
    body = await _body(request)
    try:
        count = int(body.get("count", 1))
        duration = float(body.get("duration_s", 60.0))
    except (TypeError, ValueError):
        return _bad("count must be an integer and duration_s a number")
    if count < 0 or duration <= 0:
        return _bad("count must be >= 0 and duration_s > 0")
    added = _sim(request).add_foreign_jobs(_inst(request), count, duration)
    return _json({"added": len(added), "batchIds": added})


async def stats(request: web.Request) -> web.Response:
    """``GET /_sim/stats[?instance=]``: statistics of every (or one) instance."""
    sim = _sim(request)
    if "instance" in request.query:
        instances = [_inst(request)]
    else:
        instances = list(sim.instances.values())
    body = _clock_view(sim)
    body["instances"] = {inst.munchkin_id: sim.stats(inst) for inst in instances}
    return _json(body)


async def leads(request: web.Request) -> web.Response:
    """``GET /_sim/leads[?email=]``: the lead store as a list of flat dicts."""
    sim, inst = _sim(request), _inst(request)
    sim.advance(inst)
    return _json(inst.store.export_leads(request.query.get("email")))


async def program_members(request: web.Request) -> web.Response:
    """``GET /_sim/program-members/{programId}``: members with status and member fields."""
    sim, inst = _sim(request), _inst(request)
    sim.advance(inst)
    try:
        program_id = int(request.match_info["programId"])
    except ValueError:
        return _bad("programId must be an integer")
    return _json(inst.store.export_members(program_id))


async def custom_objects(request: web.Request) -> web.Response:
    """``GET /_sim/custom-objects/{apiName}``: the records of one custom object type."""
    sim, inst = _sim(request), _inst(request)
    sim.advance(inst)
    return _json(inst.store.export_objects(request.match_info["apiName"]))


async def requests_log(request: web.Request) -> web.Response:
    """``GET /_sim/requests``: the Marketo requests received, oldest first."""
    return _json(list(_inst(request).requests))


async def get_clock(request: web.Request) -> web.Response:
    """``GET /_sim/clock``: ``{"now": epoch_s, "iso": ..., "time_scale": ...}``."""
    return _json(_clock_view(_sim(request)))


async def advance_clock(request: web.Request) -> web.Response:
    """``POST /_sim/clock/advance`` ``{"seconds": S}``: jump simulated time forward."""
    body = await _body(request)
    try:
        seconds = float(body.get("seconds", 0))
        _sim(request).clock.advance(seconds)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return _json(_clock_view(_sim(request)))


def add_admin_routes(app: web.Application) -> None:
    """Register the ``/_sim/`` endpoints."""
    r = app.router
    r.add_post("/_sim/reset", reset)
    r.add_get("/_sim/settings", get_settings)
    r.add_patch("/_sim/settings", patch_settings)
    r.add_post("/_sim/foreign-jobs", foreign_jobs)
    r.add_get("/_sim/stats", stats)
    r.add_get("/_sim/leads", leads)
    r.add_get("/_sim/program-members/{programId}", program_members)
    r.add_get("/_sim/custom-objects/{apiName}", custom_objects)
    r.add_get("/_sim/requests", requests_log)
    r.add_get("/_sim/clock", get_clock)
    r.add_post("/_sim/clock/advance", advance_clock)
