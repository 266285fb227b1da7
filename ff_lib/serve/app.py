"""The ASGI app: GET /v1/models, POST /v1/chat/completions, GET /health; errors in OpenAI's shape.

Everything blocking (the workspace, adapter checks, the door) runs in threads; the event loop
only routes and awaits.
"""

import json
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ff_lib.errors import FFError
from ff_lib.inference.adapters import validate_adapter
from ff_lib.serve import shapes
from ff_lib.serve.auth import check_key
from ff_lib.serve.catalog import list_models, resolve_model
from ff_lib.serve.errors import (
    APIError,
    bad_parameter,
    busy,
    from_ff_error,
    internal_error,
)
from ff_lib.serve.generation import APIReply, ReplyPump
from ff_lib.serve.parsing import ChatCompletionRequest, parse_chat

log = logging.getLogger("ff_lib.serve")


def create_app(ws, door, api_key: str | None = None, validate: Callable = validate_adapter):
    """The API over workspace `ws`, answering through `door` (ff_lib.inference.get_host())."""

    async def require_key(request: Request) -> None:
        check_key(request.headers.get("authorization"), api_key)

    # No /docs or /openapi.json: FastAPI serves them outside the key check.
    app = FastAPI(
        title="FF Playground API",
        dependencies=[Depends(require_key)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        served = await run_in_threadpool(list_models, ws, validate)
        return {"object": "list", "data": [m.card() for m in served]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        call = parse_chat(await _request_body(request))
        model = await run_in_threadpool(resolve_model, ws, call.model, validate)
        reason = await run_in_threadpool(_unavailable, door, model.base_model)
        if reason:
            raise busy(reason)
        cid, created = shapes.completion_id(), shapes.now()
        pump = ReplyPump(APIReply(door, ws, call, model, cid))
        first = await _first_piece(pump)
        if call.stream:
            events = _events(pump, first, cid, created, model.id)
            return StreamingResponse(events, media_type="text/event-stream")
        await _read_rest(pump, first)
        return shapes.completion(cid, created, model.id, pump.reply.served)

    return app


def _unavailable(door, base_model: str) -> str | None:
    """Why the door would make this request wait (None: it answers now). A door without
    `availability` (an engine that queues every request itself, e.g. vLLM) takes them all."""
    availability = getattr(door, "availability", None)
    return None if availability is None else availability(base_model)


async def _request_body(request: Request) -> ChatCompletionRequest:
    """The JSON body, whatever Content-Type the client sent (curl -d sends a form's)."""
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_parameter(f"The request body is not valid JSON: {exc}.") from exc
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise _reshaped(exc.errors()) from exc


async def _first_piece(pump: ReplyPump) -> str | None:
    """The first piece (or None), so that a failure before any text is an HTTP status."""
    try:
        return await pump.next_piece()
    except BaseException:
        pump.cancel()
        raise


async def _read_rest(pump: ReplyPump, piece: str | None) -> None:
    try:
        while piece is not None:
            piece = await pump.next_piece()
    finally:
        if piece is not None:  # cancelled mid-reply: the reply ends 'interrupted'
            pump.cancel()


async def _events(pump: ReplyPump, first, cid: str, created: int, model: str) -> AsyncIterator:
    """SSE: a role chunk, a chunk per piece, the finishing chunk, the usage chunk when asked,
    then `data: [DONE]`. A client that goes away ends the reply at its next piece."""
    usage = pump.reply.call.include_usage
    done = False
    try:
        yield shapes.sse(shapes.chunk(cid, created, model, {"role": "assistant", "content": ""},
                                      include_usage=usage))  # fmt: skip
        piece = first
        while piece is not None:
            yield shapes.sse(shapes.chunk(cid, created, model, {"content": piece},
                                          include_usage=usage))  # fmt: skip
            piece = await pump.next_piece()
        served = pump.reply.served
        yield shapes.sse(shapes.final_chunk(cid, created, model, served, usage))
        if usage:
            yield shapes.sse(shapes.usage_chunk(cid, created, model, served.reply))
        done = True
    except FFError as exc:  # after the headers: the error travels as an event
        done = True
        yield shapes.sse(from_ff_error(exc).body())
    except Exception:  # noqa: BLE001 - logged here; the client gets one line, no traceback
        done = True
        log.exception("unexpected error while streaming %s", cid)
        yield shapes.sse(internal_error().body())
    finally:
        if not done:
            pump.cancel()
    yield shapes.DONE


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(FFError)
    async def ff_error(request, exc: FFError) -> JSONResponse:
        return await api_error(request, from_ff_error(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError) -> JSONResponse:
        return await api_error(request, _reshaped(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException) -> JSONResponse:
        error = APIError(exc.status_code, str(exc.detail), code=None)
        return await api_error(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        return await api_error(request, internal_error())


def _reshaped(errors: list) -> APIError:
    """A validation error (pydantic's, FastAPI's) as a 400 naming the first wrong field
    (`messages[0].role`)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request body"}
    loc = [p for p in first.get("loc", ()) if p != "body"]
    # Union members ("str", "list[str]") name the type tried, not a field.
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_NAMES))]
    param = ""
    for part in loc:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    message = first.get("msg", "invalid value")
    if first.get("type") == "json_invalid":
        return bad_parameter(f"The request body is not valid JSON: {message}.")
    return bad_parameter(f"{param or 'body'}: {message}.", param or None)


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "function-after"}
