"""Shared request helpers: the app's state and write access."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from service.app import AppState


def core(request: Request) -> AppState:
    return request.app.state.core


def require_write_access(request: Request) -> None:
    """Writes need X-API-Key when the service has a key: 401 without one, 403 with a wrong one."""
    expected = core(request).settings.api_key
    if not expected:
        return
    given = request.headers.get("x-api-key")
    if not given:
        raise HTTPException(401, "this request writes to the store: send the X-API-Key header",
                            headers={"x-reason": "unauthenticated", "WWW-Authenticate": "ApiKey"})
    if not hmac.compare_digest(given, expected):
        raise HTTPException(403, "the X-API-Key is not valid for writes", headers={"x-reason": "forbidden"})


def reject_unknown_query_parameters(request: Request) -> None:
    """A misspelt parameter (class_id for classId) must not silently drop a filter and return
    everything: 422 naming it and the parameters the endpoint takes."""
    route = request.scope.get("route")
    if route is None:
        return
    allowed: set[str] = set()
    pending = [route.dependant]
    while pending:  # the endpoint's own parameters and those of its dependencies
        dependant = pending.pop()
        allowed.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise HTTPException(422, f"unknown query parameter {', '.join(unknown)}; this endpoint takes "
                                 f"{', '.join(sorted(allowed)) or 'none'}",
                            headers={"x-reason": "validation_error"})
