"""The HTTP side of a remote OpenAI-compatible engine (vLLM): its address, health, served
models, and which served name answers for our base or an adapter folder.

vLLM's rules (vllm/entrypoints/openai/models/serving.py): `GET /v1/models` lists the base as
{id, root: the model path, max_model_len} and each LoRA adapter as {id: its name, root: its
path, parent: the base's id}; `POST /v1/load_lora_adapter` {lora_name, lora_path} adds one at
runtime (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). Errors come as {"error": {"message", ...}}.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from ff_lib.errors import EngineUnreachable, GenerationError, InvalidInput
from ff_lib.inference.provenance import adapter_name

CONNECT_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 3.0
README_HINT = "README, 'Use vLLM as the engine'"


@dataclass(frozen=True)
class EngineURL:
    """Where the engine answers: `root` (no trailing /v1) and `label` ('HOST:PORT')."""

    url: str  # as the user gave it
    root: str
    label: str

    @classmethod
    def parse(cls, url: str) -> "EngineURL":
        text = (url or "").strip()
        if not text:
            raise InvalidInput(
                "The vLLM server is chosen as the engine but needs its URL: give its address "
                "(http://HOST:PORT/v1); nothing answers until one is given (or choose this "
                "machine as the engine)."
            )
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(
                f"Engine URL {text!r} is not an address like http://HOST:PORT/v1: give the "
                "vLLM server's address, or choose this machine as the engine."
            )
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[: -len("/v1")]
        default = 443 if parts.scheme == "https" else 80
        label = f"{parts.hostname}:{parts.port or default}"
        return cls(text, f"{parts.scheme}://{parts.netloc}{path}", label)

    @property
    def describe(self) -> str:
        return f"vLLM at {self.label}"


@dataclass(frozen=True)
class ServedModel:
    """One entry of GET /v1/models."""

    id: str
    root: str | None
    parent: str | None
    max_model_len: int | None

    @property
    def is_adapter(self) -> bool:
        return self.parent is not None


def error_text(response) -> str:
    """The server's own message from an error response (OpenAI's shape or vLLM's older one)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return response.text.strip()


def _resolved(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, RuntimeError):
        return path


class EngineClient:
    """Requests to one engine; thread-safe (httpx2.Client is)."""

    def __init__(
        self, url: str, api_key: str | None = None, timeout_s: float = 120.0, connections: int = 64
    ):
        # A malformed address is kept, and refused (InvalidInput) by every request and by
        # health(): the user sees why wherever the engine is used, never another engine.
        self.invalid: InvalidInput | None = None
        try:
            self.where = EngineURL.parse(url)
        except InvalidInput as exc:
            text = (url or "").strip()
            self.where, self.invalid = EngineURL(text, "", text or "(no address)"), exc
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx2.Client(
            base_url=self.where.root or "http://invalid.invalid",
            headers=headers,
            timeout=httpx2.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            # The streams (at most `connections`) plus room for /health and /v1/models.
            limits=httpx2.Limits(max_connections=connections + 8),
        )
        self._adapter_lock = threading.Lock()  # one runtime load per adapter at a time
        self.runtime_loads = 0
        # Requests that found the server dead or failing: RemoteHost's cached health check is
        # stale once this changes, so the next look says "does not answer" (not a cached "ok").
        self.failures = 0

    def unreachable(self, exc: Exception) -> EngineUnreachable:
        self.failures += 1
        return EngineUnreachable(
            f"The vLLM server at {self.where.label} ({self.where.url}) does not answer: "
            f"{exc or type(exc).__name__}. Start it ({README_HINT}) or choose this machine "
            "as the engine."
        )

    def request(self, method: str, path: str, **kwargs):
        """The response (any status); EngineUnreachable when nothing answers."""
        if self.invalid is not None:
            raise self.invalid
        try:
            return self.http.request(method, path, **kwargs)
        except httpx2.TransportError as exc:
            raise self.unreachable(exc) from exc

    def refusal(self, response, what: str) -> GenerationError:
        """The server's refusal of `what`, in its own words (and the fix for a missing key)."""
        self.failures += 1
        hint = ""
        if response.status_code == 401:
            hint = (
                " The server wants an API key: set FF_ENGINE_API_KEY to the key vLLM was started "
                "with (--api-key)."
            )
        return GenerationError(
            f"{self.where.describe} refused {what} (HTTP {response.status_code}): "
            f"{error_text(response)}{hint}"
        )

    def checked(self, method: str, path: str, what: str, **kwargs):
        """The response of a request that must succeed; GenerationError with the server's text."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise self.refusal(response, what)
        return response

    def health(self) -> str | None:
        """None when GET /health answers 200, else why not (one line)."""
        if self.invalid is not None:
            return str(self.invalid)
        try:
            response = self.http.get("/health", timeout=HEALTH_TIMEOUT_S)
        except httpx2.TransportError as exc:
            return str(self.unreachable(exc))
        if response.status_code != 200:
            return (
                f"The vLLM server at {self.where.label} is not ready (HTTP "
                f"{response.status_code} on /health): {error_text(response)}"
            )
        return None

    def models(self) -> list[ServedModel]:
        body = self.checked("GET", "/v1/models", "the list of models").json()
        return [
            ServedModel(m["id"], m.get("root"), m.get("parent"), m.get("max_model_len"))
            for m in body.get("data", [])
        ]

    def served_base(self, base_model: str, models: list[ServedModel] | None = None) -> ServedModel:
        """The served base that is `base_model` (same id, same path, or same folder resolved),
        in `models` (default: the list read now); GenerationError naming both when the server
        serves another base."""
        bases = [m for m in (self.models() if models is None else models) if not m.is_adapter]
        ours = {str(base_model), _resolved(str(base_model))}
        for model in bases:
            if {model.id, model.root, _resolved(model.root)} & ours:
                return model
        served = ", ".join(f"{m.id} ({m.root})" for m in bases) or "no base model"
        raise GenerationError(
            f"{self.where.describe} serves {served}, not the base {base_model}: it cannot "
            "answer for this run. Point the playground at a server started with this base, "
            "or choose this machine as the engine."
        )

    def adapter_model(self, base: ServedModel, folder: Path) -> tuple[str, bool]:
        """(served name, loaded now?) of the adapter in `folder`: the name it is listed under
        (root = the folder), else loaded at runtime; the server's refusal is shown as is."""
        with self._adapter_lock:
            return self._adapter_in(self.models(), base, folder)

    def model_for(self, base_model: str, folder: Path | None) -> tuple[ServedModel, str]:
        """(the served base, the model name to ask) for the base or an adapter folder, from one
        read of the list (under the adapter lock, so that one adapter is loaded once)."""
        if folder is None:
            base = self.served_base(base_model)
            return base, base.id
        with self._adapter_lock:
            models = self.models()
            base = self.served_base(base_model, models)
            return base, self._adapter_in(models, base, folder)[0]

    def _adapter_in(self, models, base: ServedModel, folder: Path) -> tuple[str, bool]:
        """adapter_model's work on a list already read; the caller holds the adapter lock."""
        folder_text = _resolved(str(folder))
        for model in models:
            if model.parent == base.id and _resolved(model.root) == folder_text:
                return model.id, False
        name = adapter_name(Path(folder))
        self.checked(
            "POST",
            "/v1/load_lora_adapter",
            f"the adapter {folder_text}",
            json={"lora_name": name, "lora_path": folder_text},
        )
        self.runtime_loads += 1
        return name, True

    def close(self) -> None:
        self.http.close()
