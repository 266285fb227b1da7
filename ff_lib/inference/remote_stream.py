"""One reply from a remote engine (vLLM) as it streams: the same shape as streams.ReplyStream.

A reader thread sends the request and reads the server-sent events into a queue, as the local
scheduler's worker does: the reply keeps arriving while the reader is busy elsewhere (Compare
starts every column before reading any), and Stop closes the HTTP stream, which makes vLLM
abort the request. With the base's tokenizer at hand the prompt is built here, exactly as the
local engine builds it, and sent as token ids to /v1/completions; the text is decoded here from
the token ids, as the local engine decodes it. Without the tokenizer the messages go to
/v1/chat/completions and the server applies its own chat template (the reply says so).
"""

import queue
import random
import threading
import time
from dataclasses import dataclass

import httpx2

from ff_lib.errors import FFError, GenerationError
from ff_lib.inference.prompts import build_prompt, normalize_messages
from ff_lib.inference.provenance import adapter_sha256
from ff_lib.inference.replies import Reply, ReplyStats
from ff_lib.inference.streams import TextStream

REMOTE_QUANTIZATION = "as served by vLLM"
SERVER_TEMPLATE = "the server applied its own chat template (the base's tokenizer is not here)"
SERVER_VALIDATION = "the adapter's files are not reachable here: validation is the server's"
_END = object()


@dataclass
class _Piece:
    """What one event of the stream brought."""

    text: str
    token_ids: list[int]
    logprobs: dict | None  # the completions `logprobs` object of this delta


class RemoteStream:
    """Iterator of text pieces for one remote reply; `reply` is set when it ends or is closed."""

    def __init__(self, host, job: dict):
        self.host = host
        self.job = job
        self.waiting = False
        self.reply: Reply | None = None
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pieces: list[str] = []
        self._tokens: list[dict] = []
        self._new_ids: list[int] = []
        self._text: TextStream | None = None
        self._done = False
        self._request: dict = {}  # filled by the reader: served name, built prompt, figures

    # --- start -----------------------------------------------------------------------------------
    def prepare(self) -> "RemoteStream":
        """Nothing to build ahead: the server builds the prompt when the request is sent."""
        return self

    def start(self) -> "RemoteStream":
        """Send the request (idempotent); the answer arrives in a reader thread."""
        if self._thread is not None or self._done:
            return self
        job = self.job
        kind = "base" if job["adapter_dir"] is None else "adapter"
        # Waiting for the other kind's turn (remote.KindGate) is this request's own Compare or
        # scorecard, not another session: `waiting` says so, on_wait (another session) is not
        # called.
        self.waiting = not self.host.gate.free_for(kind)
        settings = job["settings"]
        seed = settings.seed
        if seed is None and settings.sampling:
            seed = random.SystemRandom().randrange(2**31)
        self._request["seed"] = seed
        self._thread = threading.Thread(target=self._read, args=(kind,), daemon=True)
        self._thread.start()
        return self

    def _read(self, kind: str) -> None:
        """The reader thread: gate, prepare, POST, events into the queue; END or an error last."""
        try:
            with self.host.gate.held(kind, self._stop), self.host.request_slot(self._stop) as ok:
                if not ok or self._stop.is_set():
                    return
                path, body = self._prepare()
                self._request["submitted_at"] = time.perf_counter()
                with self.host.client.http.stream("POST", path, json=body) as response:
                    if response.status_code >= 400:
                        response.read()
                        what = f"the request for {self._request['model']!r}"
                        raise self.host.client.refusal(response, what)
                    self._pump(httpx2.EventSource(response))
        except httpx2.TransportError as exc:
            if not self._stop.is_set():
                self._events.put(self.host.client.unreachable(exc))
        except FFError as exc:
            self._events.put(exc)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, who raises it
            self._events.put(GenerationError(f"The remote reply failed: {exc}"))
        finally:
            self._request.setdefault("ended_at", time.perf_counter())
            self._events.put(_END)

    def _prepare(self) -> tuple[str, dict]:
        """(endpoint, JSON body): the served model for the base or the adapter, and the prompt."""
        job, host = self.job, self.host
        settings = job["settings"]
        base, name = host.client.model_for(job["base_model"], job["adapter_dir"])
        tokenizer = host.tokenizer_for(job["base_model"])
        body = {
            "model": name,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": settings.top_k,
            "repetition_penalty": settings.repetition_penalty,
            "seed": self._request["seed"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self._request.update(model=name, base=base, tokenizer=tokenizer)
        if tokenizer is None:  # the server applies its chat template
            messages = normalize_messages(job["messages"], settings.system_prompt)
            body.update(messages=messages, max_tokens=settings.max_new_tokens)
            self._request["max_new_tokens"] = settings.max_new_tokens
            return "/v1/chat/completions", body
        built = build_prompt(
            tokenizer,
            job["messages"],
            system_prompt=settings.system_prompt,
            context_length=base.max_model_len,
            max_new_tokens=settings.max_new_tokens,
        )
        max_new = built.max_new_tokens or settings.max_new_tokens
        eos = set(host.eos_token_ids(job["base_model"]))
        self._request.update(built=built, max_new_tokens=max_new, eos=eos)
        self._text = TextStream(tokenizer)
        body.update(prompt=list(built.input_ids), max_tokens=max_new, return_token_ids=True)
        if job.get("logprobs") is not None:
            body.update(logprobs=job["logprobs"], return_tokens_as_token_ids=True)
        return "/v1/completions", body

    def _pump(self, source) -> None:
        for event in source:
            if self._stop.is_set():
                return  # leaving the `with` closes the HTTP stream: vLLM aborts the request
            if event.data.strip() == "[DONE]":
                return
            chunk = event.json()
            if chunk.get("usage"):
                self._request["usage"] = chunk["usage"]
            for choice in chunk.get("choices") or []:
                text = choice.get("text")
                if text is None:  # chat completions: the delta
                    text = (choice.get("delta") or {}).get("content") or ""
                ids = choice.get("token_ids") or []
                if (text or ids) and "first_token_at" not in self._request:
                    self._request["first_token_at"] = time.perf_counter()
                self._events.put(_Piece(text, list(ids), choice.get("logprobs")))
                if choice.get("finish_reason"):
                    self._request["finish_reason"] = choice["finish_reason"]
                    self._request["stop_reason"] = choice.get("stop_reason")
                    self._request["ended_at"] = time.perf_counter()

    # --- read ------------------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> str:
        self.start()
        while not self._done:
            try:
                item = self._events.get(timeout=self.host.stream_timeout_s)
            except queue.Empty as exc:
                if "submitted_at" not in self._request and self._thread.is_alive():
                    continue  # still waiting for its turn at the gate (which has its own limit)
                self._stop.set()
                raise GenerationError(
                    f"No token came from {self.host.where.describe} for "
                    f"{self.host.stream_timeout_s:.0f} s: generation stalled. Try again."
                ) from exc
            self.waiting = False
            if item is _END:
                self._end(stopped=self._stop.is_set())
                tail = self._text.flush() if self._text is not None else ""
                if tail:
                    self._pieces.append(tail)
                    return tail
                raise StopIteration
            if isinstance(item, FFError):
                self._done = True
                self._stop.set()
                raise item
            piece = self._push(item)
            if piece:
                return piece
        raise StopIteration

    def _push(self, item: _Piece) -> str:
        tokenizer = self._request.get("tokenizer")
        # The end-of-turn token is not part of the reply (the local engine does not emit it).
        eos = self._request.get("eos") or set()
        kept = [i for i, t in enumerate(item.token_ids) if t not in eos]
        ids = [item.token_ids[i] for i in kept]
        text = self._text
        piece = item.text if text is None else "".join(text.push(t) for t in ids)
        self._new_ids.extend(ids)
        if item.logprobs and tokenizer is not None:
            self._tokens.extend(_token_records(tokenizer, item.token_ids, item.logprobs, kept))
        if piece:
            self._pieces.append(piece)
        return piece

    def close(self) -> None:
        """Stop: the HTTP stream is closed (vLLM aborts the request); the Reply keeps the text."""
        if self._done:
            return
        if self._thread is None:
            self._done = True
            return
        self._stop.set()
        self._thread.join(self.host.stream_timeout_s)
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Piece):
                self._push(item)
        self._end(stopped=True)

    def text(self) -> str:
        """Consume the whole stream; the reply's text."""
        for _ in self:
            pass
        return self.reply.text if self.reply else ""

    # --- the record ------------------------------------------------------------------------------
    def _end(self, stopped: bool) -> None:
        self._done = True
        if self.reply is not None:
            return
        self.reply = reply_of(self.host, self, stopped)

    def __del__(self):
        # A stream dropped unread must not keep the server generating.
        self._stop.set()


def _token_records(tokenizer, token_ids: list[int], logprobs: dict, kept: list[int]) -> list:
    """Reply.tokens entries from a completions `logprobs` delta (tokens as 'token_id:N'), for
    the positions `kept`."""
    records = []
    chosen = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    for i in kept:
        token = token_ids[i]
        top = tops[i] if i < len(tops) and tops[i] else {}
        pairs = sorted(((_token_id(k), lp) for k, lp in top.items()), key=lambda p: -p[1])
        records.append(
            {
                "token": token,
                "text": tokenizer.decode([token]),
                "logprob": chosen[i] if i < len(chosen) else None,
                "top": [[tokenizer.decode([t]), lp] for t, lp in pairs],
            }
        )
    return records


def _token_id(key: str) -> int:
    return int(key.split(":", 1)[1]) if key.startswith("token_id:") else int(key)


def _stats(stream: "RemoteStream") -> ReplyStats:
    """Figures measured from the stream: time to first token and tokens/s from the POST on."""
    req = stream._request
    submitted = req.get("submitted_at") or time.perf_counter()
    total = max((req.get("ended_at") or time.perf_counter()) - submitted, 1e-9)
    first = req.get("first_token_at")
    usage = req.get("usage") or {}
    built = req.get("built")
    if req.get("tokenizer") is not None:
        new_tokens = len(stream._new_ids)
    else:  # the server's count, less the end-of-turn token it counts (stop_reason None = EOS)
        ended_on_eos = req.get("finish_reason") == "stop" and req.get("stop_reason") is None
        new_tokens = max(0, usage.get("completion_tokens", 0) - int(ended_on_eos))
    return ReplyStats(
        prompt_tokens=usage.get("prompt_tokens") or (len(built.input_ids) if built else 0),
        new_tokens=new_tokens,
        ttft_s=None if first is None else round(first - submitted, 4),
        tokens_per_s=round(new_tokens / total, 2),
        total_s=round(total, 4),
    )


def reply_of(host, stream: RemoteStream, stopped: bool) -> Reply:
    """The Reply of a finished or stopped remote stream."""
    req, job = stream._request, stream.job
    built, tokenizer, finish = req.get("built"), req.get("tokenizer"), req.get("finish_reason")
    # A Stop that came after the server's last token leaves the reply whole: it keeps its end.
    ended = finish in ("stop", "length")
    reason = "stopped" if (stopped and not ended) or finish == "abort" else finish
    reason = "eos" if reason == "stop" else reason
    adapter = job["adapter_dir"]
    weights, sha = (None, None)
    notes = []
    if adapter is not None:
        if adapter.is_dir():
            weights, sha = adapter_sha256(adapter)
        else:
            notes.append(SERVER_VALIDATION)
    if tokenizer is None:
        notes.append(SERVER_TEMPLATE)
    base = req.get("base")
    return Reply(
        text="".join(stream._pieces),
        stats=_stats(stream),
        adapter=None if adapter is None else str(adapter),
        adapter_name=req.get("model") if adapter is not None else None,
        base_model=job["base_model"],
        quantization=REMOTE_QUANTIZATION,
        describe=host.where.describe,
        settings=job["settings"].as_dict(),
        seed=req.get("seed"),
        prompt_text=built.text if built else "",
        template=built.template if built else "server",
        dropped_turns=built.dropped_turns if built else 0,
        truncated_tokens=built.truncated_tokens if built else 0,
        max_new_tokens=req.get("max_new_tokens") or job["settings"].max_new_tokens,
        stopped=reason == "stopped",
        finish_reason=reason or "stopped",
        decoder="vLLM /v1/completions" if tokenizer is not None else "vLLM /v1/chat/completions",
        adapter_weights=weights,
        adapter_sha256=sha,
        base_source=(base.root or base.id) if base is not None else "",
        quantization_reason="chosen by the vLLM server",
        tokens=tuple(stream._tokens),
        engine=host.where.describe,
        engine_note="; ".join(notes),
    )
