"""What every door to generation shares (the in-process ModelHost and the vLLM RemoteHost): the
checks a request passes before it is accepted, and whole replies on top of `stream_reply`."""

from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import groupby
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference.adapters import validate_adapter
from ff_lib.inference.prompts import normalize_messages
from ff_lib.inference.replies import Reply
from ff_lib.inference.settings import GenerationSettings

# (adapter folder, base) -> the checked folder, while requests are built together (checks_shared)
_SHARED_CHECKS: ContextVar[dict | None] = ContextVar("shared_checks", default=None)


def checked_adapter(adapter_dir, base_model: str) -> Path:
    """The adapter's folder once it passes validation against the base (else AdapterInvalid);
    inside `checks_shared`, once per (folder, base)."""
    shared = _SHARED_CHECKS.get()
    key = (str(adapter_dir), str(base_model))
    if shared is not None and key in shared:
        return shared[key]
    check = validate_adapter(adapter_dir, base_model=base_model).raise_if_invalid()
    folder = Path(check.adapter_dir)
    if shared is not None:
        shared[key] = folder
    return folder


@contextmanager
def checks_shared():
    """Requests built inside it (a batch, a scorecard's rows) check each adapter once: they are
    built at one moment from the same files. A request built later checks again (an adapter
    retrained meanwhile is seen); that check reads the folder, its config and its weights'
    header, and repeats the tensor-by-tensor checks only for a header or config it has not
    passed before (adapters._Memo: 0.5 ms instead of 4 ms on the 8B shape)."""
    outer = _SHARED_CHECKS.get()  # nested: the outer batch's checks
    token = _SHARED_CHECKS.set({} if outer is None else outer)
    try:
        yield
    finally:
        _SHARED_CHECKS.reset(token)


def checked_if_here(adapter_dir, base_model: str) -> Path:
    """An adapter this machine can read is validated here, as the local engine does; one only
    a remote server has is the server's to validate."""
    if not Path(adapter_dir).exists():
        return Path(adapter_dir)
    return checked_adapter(adapter_dir, base_model)


def checked_job(
    base_model: str,
    messages: list[dict],
    settings: GenerationSettings,
    adapter_dir: Path | None,
    quantization: str,
    logprobs: int | None,
    check_adapter: Callable[[Path, str], Path],
) -> dict:
    """The request as a stream runs it, once its settings, messages, adapter (the door's
    `check_adapter(adapter_dir, base_model)`, which returns the folder to use), base and logprobs
    pass: EmptyPrompt / InvalidInput / AdapterInvalid at once."""
    if not isinstance(settings, GenerationSettings):
        raise InvalidInput("settings must be a GenerationSettings.")
    normalize_messages(messages, settings.system_prompt)
    if adapter_dir is not None:
        adapter_dir = check_adapter(Path(adapter_dir), base_model)
    if not base_model:
        raise InvalidInput("No base model: type a Hugging Face id or a local model folder.")
    if logprobs is not None and not 0 <= logprobs <= 20:
        raise InvalidInput(f"logprobs must be between 0 and 20 (got {logprobs}).")
    return {
        "base_model": str(base_model),
        "messages": [dict(m) for m in messages],
        "settings": settings,
        "adapter_dir": adapter_dir,
        "quantization": quantization,
        "logprobs": logprobs,
    }


class WholeReplies:
    """`generate` and `generate_many` for a door that has `stream_reply`."""

    def generate(self, *args, **kwargs) -> Reply:
        """stream_reply, read to the end; the Reply."""
        stream = self.stream_reply(*args, **kwargs)
        stream.text()
        return stream.reply

    def generate_many(self, jobs: list[dict]) -> list[Reply]:
        """Replies to many requests (stream_reply's keyword arguments each), all prepared
        before any is submitted and all submitted before any is read, so the engine prefills
        and decodes them together."""
        with checks_shared():
            streams = [self.stream_reply(**job) for job in jobs]
        with together(streams):
            for stream in streams:
                stream.text()
        return [s.reply for s in streams]


@contextmanager
def together(streams: list):
    """Start `streams` so that the engine takes them as one batch: every request of a run of
    consecutive streams on one base (and quantization) is prepared before any is submitted;
    a run on another base then waits for the submitted ones, as any base switch does. Every
    stream is closed on the way out (stopped if unread)."""
    try:
        for run in _runs_of_one_base(streams):
            prepare_together(run)
            for stream in run:
                stream.start()
        yield streams
    finally:
        for stream in streams:
            stream.close()


def prepare_together(run: list) -> None:
    """prepare() each stream of a run on one base: the first loads the base if needed, the
    others are prepared by it when its door can (`prepare_others`: on its engine, their
    prompts tokenized in one call)."""
    run[0].prepare()
    prepare_others = getattr(run[0], "prepare_others", None)
    if prepare_others is not None:
        prepare_others(run[1:])
        return
    for stream in run[1:]:
        stream.prepare()


def _runs_of_one_base(streams: list) -> list[list]:
    def base(stream) -> tuple:
        return str(stream.job["base_model"]), stream.job["quantization"]

    return [list(run) for _, run in groupby(streams, key=base)]
