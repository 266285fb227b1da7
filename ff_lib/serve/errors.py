"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with their status.

Every ff_lib.errors class is mapped on purpose (STATUS_OF); nothing else reaches the client but
a one-line "internal error" (the traceback goes to the server's log).
"""

from dataclasses import dataclass, field

from ff_lib import errors

# Seconds a client is asked to wait before retrying a 503.
RETRY_AFTER_S = 5


@dataclass
class APIError(Exception):
    """An error the API answers with: HTTP status and OpenAI's error fields."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict:
        """The JSON document OpenAI's clients read (openai.APIStatusError.body)."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def busy(message: str) -> APIError:
    """503 with Retry-After: the engine or the workspace cannot take the request now."""
    return APIError(
        503,
        message,
        type="server_error",
        code="engine_busy",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def model_not_found(model: str) -> APIError:
    return APIError(
        404,
        f"The model {model!r} does not exist in this workspace: GET /v1/models lists the runs "
        "and base models that can answer.",
        param="model",
        code="model_not_found",
    )


def cannot_answer(reason: str) -> APIError:
    """422: the model exists but cannot answer; `reason` is the validation's message."""
    return APIError(422, reason, param="model", code="model_invalid")


def bad_parameter(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param, code="invalid_parameter")


# ff_lib.errors class -> (status, OpenAI type, code). Checked in order: the first match wins.
STATUS_OF: tuple[tuple[type, int, str, str], ...] = (
    (errors.WorkspaceBusy, 503, "server_error", "workspace_busy"),
    (errors.NotFound, 404, "invalid_request_error", "not_found"),
    (errors.EmptyPrompt, 400, "invalid_request_error", "invalid_parameter"),
    (errors.InvalidInput, 400, "invalid_request_error", "invalid_parameter"),
    (errors.QuantizationError, 400, "invalid_request_error", "invalid_parameter"),
    (errors.AdapterInvalid, 422, "invalid_request_error", "model_invalid"),
    (errors.BaseModelUnavailable, 422, "invalid_request_error", "model_invalid"),
    (errors.GenerationError, 500, "server_error", "generation_failed"),
    (errors.WorkspaceError, 500, "server_error", "workspace_error"),
    (errors.DatasetImportError, 400, "invalid_request_error", "invalid_parameter"),
    (errors.FineFoundryImportError, 400, "invalid_request_error", "invalid_parameter"),
)


def from_ff_error(exc: errors.FFError) -> APIError:
    """The API's answer to a domain error: its message as is, with the status its class has."""
    for cls, status, kind, code in STATUS_OF:
        if isinstance(exc, cls):
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
            return APIError(status, str(exc), type=kind, code=code, headers=headers)
    return APIError(500, str(exc), type="server_error", code="internal_error")


def internal_error() -> APIError:
    return APIError(
        500,
        "Internal error in the FF Playground server (details are in its log).",
        type="server_error",
        code="internal_error",
    )
