"""The bench's figures of the app's door: one reply, a fresh load, slots, rows decoded together,
a request joining a streaming one, scorecards. Every reply goes through the host as the pages
send it (`stream_reply` / `generate` / `generate_many`)."""

import argparse
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ff_lib.errors import GenerationError
from ff_lib.inference import GenerationSettings, ModelHost, Reply, benchkit
from ff_lib.inference.prompts import encode, render

ROTATION = ("a0", "a1", "a2", "a3", None)  # mixed batches: 4 adapters and the base, in turn


# --- the door -------------------------------------------------------------------------------------
def prompt_messages(tokenizer, tokens: int, seed: int) -> list[dict]:
    """One user turn of random vocabulary words whose prompt (template included) is the longest
    that stays within `tokens` tokens."""
    rng = random.Random(seed)
    specials = set(tokenizer.all_special_ids)
    pool = [i for i in range(len(tokenizer)) if i not in specials]
    words: list[str] = []
    while len(words) < tokens:
        word = tokenizer.decode([rng.choice(pool)]).strip()
        if word and "\ufffd" not in word and not word.startswith("<|"):  # no template marks
            words.append(word)

    def messages(k: int) -> list[dict]:
        return [{"role": "user", "content": " ".join(words[:k])}]

    def count(k: int) -> int:
        return len(encode(tokenizer, render(tokenizer, messages(k))[0]))

    low, high = 1, len(words)
    while low < high:  # the largest k whose prompt fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if count(mid) <= tokens else (low, mid - 1)
    return messages(low)


def greedy(new_tokens: int, penalty: float = 1.15) -> GenerationSettings:
    """Greedy replies of `new_tokens` tokens, with the default preset's repetition penalty."""
    return GenerationSettings(
        temperature=0.0, max_new_tokens=new_tokens, repetition_penalty=penalty, seed=0
    )


@dataclass
class Door:
    """The bench's handle on one host: its base, quantization and adapters."""

    host: ModelHost
    base: Path
    quantization: str
    adapters: dict
    log: object = print

    @property
    def engine(self):
        return self.host.load_base(str(self.base), self.quantization)

    def folder(self, name: str | None) -> Path | None:
        return None if name is None else self.adapters[name]

    def job(self, messages, name, settings, logprobs=None) -> dict:
        return {
            "base_model": str(self.base),
            "messages": messages,
            "settings": settings,
            "adapter_dir": self.folder(name),
            "quantization": self.quantization,
            "logprobs": logprobs,
        }

    def reply(self, messages, name, settings, logprobs=None) -> Reply:
        return full_length(self.host.generate(**self.job(messages, name, settings, logprobs)))

    def many(self, jobs: list[dict]) -> tuple[list[Reply], float]:
        started = time.perf_counter()
        replies = self.host.generate_many(jobs)
        return [full_length(r) for r in replies], time.perf_counter() - started


def full_length(reply: Reply) -> Reply:
    """The reply, once checked to have run to its asked length with its prompt whole."""
    if reply.finish_reason != "length" or reply.stats.new_tokens != reply.max_new_tokens:
        raise GenerationError(
            f"A timed reply ended after {reply.stats.new_tokens} of {reply.max_new_tokens} tokens "
            f"({reply.finish_reason}): its rate would be timed on a shorter reply. Rebuild the "
            "bench models (delete --models-dir) so that their end-of-turn rows are zeroed."
        )
    if reply.truncated_tokens or reply.dropped_turns:
        raise GenerationError("A timed prompt was cut to fit the context: lower the prompt size.")
    return reply


def decode_rate(reply: Reply) -> float:
    """Tokens per second after the first token: (new_tokens - 1) / (total - ttft)."""
    stats = reply.stats
    return (stats.new_tokens - 1) / max(stats.total_s - stats.ttft_s, 1e-9)


def _median(values) -> float:
    return statistics.median(values)


# --- ours ----------------------------------------------------------------------------------------
def probe_parser() -> argparse.ArgumentParser:
    """The first-reply probes' arguments: the bench model, where it is built, quantization."""
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="llama-8b-shape")
    p.add_argument("--models-dir", default="/tmp/ff-models")
    p.add_argument("--quantization", default="bf16")
    p.add_argument("--json")
    return p


def fresh_door(model: str, models_dir: str, quantization: str) -> tuple[Door, list[dict]]:
    """A fresh host as the app builds it, on the bench's models (built once into `models_dir`),
    and the bench's 512-token prompt: where the first-reply probes start."""
    from ff_lib.inference.benchmodels import build_models, tokenizer_of
    from ff_lib.inference.host import new_host

    base, adapters = build_models(model, Path(models_dir) / model, 16)
    messages = prompt_messages(tokenizer_of(base), 512, 7)
    return Door(new_host(), base, quantization, adapters, log=lambda *_: None), messages


def first_reply_after_load(door: Door, messages) -> dict:
    """A fresh host's first reply, as the page's first reply: load, warm-up, slot, first text."""
    stream = door.host.stream_reply(
        str(door.base), messages, greedy(16), door.adapters["a0"], door.quantization
    )
    started = time.perf_counter()
    first_text = None
    for piece in stream:
        if piece and first_text is None:
            first_text = time.perf_counter() - started
    if first_text is None:
        raise GenerationError("The first reply after the load gave no text: nothing to time.")
    request, engine = stream.request, door.engine
    info = door.host.info()
    return {
        "load_s": engine.load_s,
        # from the weights loaded to the request joining the batch: KV cache, graphs, prompt
        "warm_up_s": request.submitted_at - started - engine.load_s,
        # then: the adapter read into a slot, the prompt's prefill and the first token
        "first_adapter_into_slot_s": request.placed_at - request.submitted_at,
        "first_prefill_s": request.first_token_at - request.placed_at,
        "first_token_after_load_s": request.first_token_at - started - engine.load_s,
        "first_text_after_load_s": first_text - engine.load_s,
        "describe": info.describe,
        "quantization_mode": engine.quantization.mode,
        "quantization_reason": engine.quantization.reason,
        "fast_path": engine.decoder_name,
        "adapter_mode": "live LoRA in slots beside an untouched base",
        "context": info.context,
        "max_rows": info.rows,
        "weight_bytes_per_token": benchkit.decode_bytes_per_token(engine.model),
        "kv_cache_gib": benchkit.kv_cache_gib(engine.batched),
        "base_memory_gib": benchkit.peak_memory_gib(),
    }


def adapter_memory(door: Door) -> dict:
    """Slots' own count of resident bytes per adapter, and (CUDA) the allocator's: memory held
    with 2 adapters in slots against 4 (the slots grow from 2 to 4 places), both read in the
    worker between steps with nothing captured in between."""
    engine = door.engine
    slots = engine.batched.slots

    def load():
        held, peaks = {"1": benchkit.allocated_gib()}, {"1": benchkit.peak_memory_gib()}
        for count, names in (("2", ["a1"]), ("4", ["a2", "a3"])):
            for name in names:
                slots.ensure(str(door.adapters[name]), set())
            held[count], peaks[count] = benchkit.allocated_gib(), benchkit.peak_memory_gib()
        engine.batched.drop_stale_graphs()  # as the scheduler does after the slots grow
        return held, peaks

    held, peaks = engine.scheduler.run_exclusive(load)
    door.reply(prompt_messages(engine.tokenizer, 16, 1), "a3", greedy(2))  # slots answer
    return {
        "resident_gib_per_adapter": slots.bytes_per_adapter() / 2**30,
        "memory_per_adapter_gib": None if held["2"] is None else (held["4"] - held["2"]) / 2,
        "memory_gib": held,
        "peak_memory_gib": peaks,
        "slot_capacity": slots.capacity,
        "slot_rank": slots.rank,
    }


def batch_one(door: Door, messages, new_tokens: int, repeats: int, suffix: str = "") -> dict:
    """Batch-1 replies with adapter a0 (one untimed first on CUDA, where it captures graphs)."""
    settings = greedy(new_tokens)
    if benchkit.cuda():
        door.reply(messages, "a0", settings)
    replies = [door.reply(messages, "a0", settings) for _ in range(repeats)]
    return {
        f"prompt_tokens{suffix}": replies[0].stats.prompt_tokens,
        f"ttft{suffix}_s": _median([r.stats.ttft_s for r in replies]),
        f"decode_tokens_per_s{suffix}": _median([decode_rate(r) for r in replies]),
    }


def sampled_rate(door: Door, messages, new_tokens: int) -> float:
    """Decode rate of one reply with the default preset's sampling (it may end early: the rate
    is over the tokens it had)."""
    settings = GenerationSettings(max_new_tokens=new_tokens, seed=0)
    reply = door.host.generate(**door.job(messages, "a0", settings))
    return decode_rate(reply) if reply.stats.new_tokens > 1 else None


def switching(door: Door, messages, repeats: int) -> dict:
    """Replies alternating between two adapters already in slots: the slot switch, the time to
    first token after a switch (against the same adapter again) and graph recaptures."""
    engine = door.engine
    settings = greedy(4)
    for name in ("a0", "a1", "a0"):  # graphs of this bucket captured before counting
        door.reply(messages, name, settings)
    captures = engine.batched.captures
    switched, switch_ttft, same_ttft = [], [], []
    for i in range(repeats * 2):
        name = ("a1", "a0")[i % 2]
        switch_ttft.append(door.reply(messages, name, settings).stats.ttft_s)
        switched.append(engine.batched.slots.last_switch_s)
        same_ttft.append(door.reply(messages, name, settings).stats.ttft_s)
    return {
        "switch_s": _median(switched),
        "switch_ttft_s": _median(switch_ttft),
        "same_adapter_ttft_s": _median(same_ttft),
        "switch_recaptures": engine.batched.captures - captures,
    }


def concurrent_rows(door: Door, prompt_tokens: int, new_tokens: int, repeats: int = 1) -> dict:
    """Aggregate tokens/s of n rows on mixed adapters submitted together (the median of
    `repeats` batches), and the same 8 requests one after another."""
    tokenizer = door.engine.tokenizer
    scheduler = door.engine.scheduler
    settings = greedy(new_tokens)
    sizes = [1, 2, 4, 8] + ([16] if benchkit.cuda() else [])
    prompts = [prompt_messages(tokenizer, prompt_tokens, 100 + i) for i in range(max(sizes))]

    def jobs(n):
        return [door.job(prompts[i], ROTATION[i % len(ROTATION)], settings) for i in range(n)]

    rates, seen = {}, {}
    for n in sizes:
        if benchkit.cuda():
            door.many(jobs(n))  # captures this batch's graphs untimed
        scheduler.max_batch_seen = 0
        runs = [door.many(jobs(n)) for _ in range(repeats)]
        rates[str(n)] = _median([sum(r.stats.new_tokens for r in rs) / wall for rs, wall in runs])
        seen[str(n)] = scheduler.max_batch_seen
        door.log(f"ours: {n} rows together: {rates[str(n)]:.1f} tok/s")
    started, tokens = time.perf_counter(), 0
    for job in jobs(8):
        tokens += full_length(door.host.generate(**job)).stats.new_tokens
    sequential = tokens / (time.perf_counter() - started)
    return {
        "batch_tokens_per_s": rates,
        "batch_rows_decoded_together": seen,
        "sequential_tokens_per_s": sequential,
        "batch_speedup_8": rates["8"] / sequential,
    }


def second_request_ttft(door: Door, messages, new_tokens: int, repeats: int) -> float:
    """Time to first token of a request (adapter a1) sent while another (a0) streams."""
    ttfts = []
    for _ in range(repeats):
        # long enough to stream on through the second's first token on a busy machine (it
        # is closed right after); new_tokens itself ended first in one CI run
        first = door.host.stream_reply(**door.job(messages, "a0", greedy(4 * new_tokens)))
        try:
            for _ in zip(range(3), first, strict=False):  # the first reply is streaming
                pass
            second = door.host.stream_reply(**door.job(messages, "a1", greedy(4)))
            second.text()
            full_length(second.reply)
            ended = first.request.ended_at
            if ended is not None and ended < second.request.first_token_at:
                raise GenerationError(
                    "The first reply ended before the second's first token: raise --new-tokens."
                )
            ttfts.append(second.reply.stats.ttft_s)
        finally:
            first.close()
    return _median(ttfts)


def scorecard(door: Door, prompts: int, new_tokens: int) -> dict:
    """n prompts x (base + 2 adapters): every reply submitted together, then one by one."""
    tokenizer = door.engine.tokenizer
    settings = greedy(new_tokens, penalty=1.0)
    jobs = [
        door.job(prompt_messages(tokenizer, 32, 200 + i), name, settings)
        for i in range(prompts)
        for name in (None, "a0", "a1")
    ]
    if benchkit.cuda():
        door.many(jobs)
    _, wall = door.many(jobs)
    started = time.perf_counter()
    for job in jobs:
        full_length(door.host.generate(**job))
    sequential = time.perf_counter() - started
    return {
        "scorecard_rows_per_s": len(jobs) / wall,
        "scorecard_sequential_rows_per_s": len(jobs) / sequential,
    }


def greedy_tokens(door: Door, messages, n: int) -> dict:
    """Our greedy token ids (no repetition penalty) with adapter a1 and with the base."""
    out = {}
    for label, name in (("adapter", "a1"), ("base", None)):
        reply = door.reply(messages, name, greedy(n, penalty=1.0), logprobs=0)
        out[label] = [t["token"] for t in reply.tokens]
    return out
