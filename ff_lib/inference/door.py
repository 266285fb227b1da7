"""What every door to generation shares (the in-process ModelHost and the vLLM RemoteHost): the
checks a request passes before it is accepted, and whole replies on top of `stream_reply`."""

from collections.abc import Callable
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path

from ff_lib.errors import InvalidInput
from ff_lib.inference.adapters import validate_adapter
from ff_lib.inference.prompts import normalize_messages
from ff_lib.inference.replies import Reply
from ff_lib.inference.settings import GenerationSettings


def checked_adapter(adapter_dir, base_model: str) -> Path:
    """The adapter's folder once it passes validation against the base (else AdapterInvalid)."""
    return Path(validate_adapter(adapter_dir, base_model=base_model).raise_if_invalid().adapter_dir)


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
            for stream in run:
                stream.prepare()
            for stream in run:
                stream.start()
        yield streams
    finally:
        for stream in streams:
            stream.close()


def _runs_of_one_base(streams: list) -> list[list]:
    def base(stream) -> tuple:
        return str(stream.job["base_model"]), stream.job["quantization"]

    return [list(run) for _, run in groupby(streams, key=base)]
