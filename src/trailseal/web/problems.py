"""RFC 9457 problem documents: every error the API answers is one of these."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trailseal.errors import FieldProblem, InvalidInput, NotFound, OutOfRange

PROBLEM_TYPE = "https://trailseal.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "instance": request.url.path,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if problem.errors:
        body["errors"] = [
            {"index": e.index, "path": e.path, "message": e.message} for e in problem.errors
        ]
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def _on_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    if isinstance(exc, OutOfRange):
        return problem_response(request, Problem(400, "out-of-range", "Out of range", str(exc)))
    return problem_response(
        request, Problem(422, "invalid-input", "Invalid input", str(exc), exc.problems)
    )


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, Problem(404, "not-found", "Not found", str(exc)))


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldProblem(None, ".".join(str(p) for p in err["loc"]), err["msg"])
        for err in exc.errors()
    ]
    return problem_response(
        request, Problem(422, "invalid-input", "Invalid input", "invalid parameters", errors)
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem_response(
        request,
        Problem(exc.status_code, slug, str(exc.detail), headers=dict(exc.headers or {})),
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, Problem(500, "internal-error", "Internal error"))


HANDLERS: dict[type[Exception], Any] = {
    Problem: _on_problem,
    InvalidInput: _on_invalid,
    NotFound: _on_not_found,
    RequestValidationError: _on_request_validation,
    StarletteHTTPException: _on_http,
    Exception: _on_unexpected,
}
