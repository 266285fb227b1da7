"""Torch-side readings for `python -m ff_lib bench`: device, memory, weight bytes, base-weight
snapshots, and the reference app's way of answering (unmerged PeftModel + plain `generate`)."""

import gc
import resource
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def cuda() -> bool:
    return torch.cuda.is_available()


def device() -> torch.device:
    return torch.device("cuda" if cuda() else "cpu")


def device_name() -> str:
    return torch.cuda.get_device_name(0) if cuda() else "cpu"


def versions() -> dict[str, str]:
    import platform

    import peft
    import transformers

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    try:
        import bitsandbytes

        found["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        found["bitsandbytes"] = "not installed"
    return found


def sync() -> None:
    if cuda():
        torch.cuda.synchronize()


def free_memory() -> None:
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()


def reset_peak() -> None:
    if cuda():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float:
    """Peak device memory since reset_peak (CUDA), else the process's peak resident size."""
    if cuda():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def allocated_gib() -> float | None:
    """Device memory held by tensors now (CUDA); None on the CPU, where no figure is exact."""
    if not cuda():
        return None
    sync()
    return torch.cuda.memory_allocated() / 2**30


def kv_cache_gib(batched) -> float:
    caches = [*batched.k_cache, *batched.v_cache]
    return sum(t.numel() * t.element_size() for t in caches) / 2**30


def _weight_tensors(model) -> list[torch.Tensor]:
    """Every tensor of the base's weights once: parameters, buffers, 4-bit quantization state."""
    found, seen = [], set()

    def add(t):
        if isinstance(t, torch.Tensor) and (t.data_ptr(), t.numel(), t.dtype) not in seen:
            seen.add((t.data_ptr(), t.numel(), t.dtype))
            found.append(t)

    for tensor in [*model.parameters(), *model.buffers()]:
        add(tensor)
        state = getattr(tensor, "quant_state", None)
        if state is not None:
            add(getattr(state, "absmax", None))
            add(getattr(getattr(state, "state2", None), "absmax", None))
    return found


def decode_bytes_per_token(model) -> int:
    """Weight bytes one decode step reads: every parameter and buffer, 4-bit storage and its
    scales as stored, except an untied input embedding table (one row of it is read)."""
    embed = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight.data_ptr() == embed.data_ptr()
    total = 0
    for tensor in _weight_tensors(model):
        if tensor.data_ptr() == embed.data_ptr() and not tied:
            continue
        total += tensor.numel() * tensor.element_size()
    return total


def snapshot_weights(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(live tensor, bit copy) for every base weight tensor; the copy stays on the device when it
    fits twice over in free memory, else goes to the CPU."""
    tensors = _weight_tensors(model)
    size = sum(t.numel() * t.element_size() for t in tensors)
    keep_on_device = not cuda() or torch.cuda.mem_get_info()[0] > 2 * size
    return [(t, t.detach().clone() if keep_on_device else t.detach().cpu()) for t in tensors]


def _bits(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().contiguous().view(-1)
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    return flat.view(width)


def changed_fraction(snapshot) -> dict:
    """Elements whose bits differ from the snapshot, as a share of all base weight elements."""
    changed = total = 0
    with torch.no_grad():
        for live, copy in snapshot:
            changed += int((_bits(live) != _bits(copy).to(live.device)).sum())
            total += live.numel()
    return {
        "changed_fraction": changed / max(total, 1),
        "tensors": len(snapshot),
        "elements": total,
    }


def bit_identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((_bits(a) == _bits(b)).all())


def copy_bandwidth_gb_s(size_gib: float = 1.0, repeats: int = 20) -> float | None:
    """Device-to-device copy rate, bytes read + written per second (GB/s); None off CUDA."""
    if not cuda():
        return None
    n = int(size_gib * 2**30)
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    del src, dst
    free_memory()
    return 2 * n / statistics.median(times) / 1e9


# --- the reference app: unmerged PeftModel, plain generate, a base reload per switch ------------
def load_reference(base: Path, adapter: Path, mode: str):
    """(PeftModel, tokenizer): the base loaded as the app loads it (same dtype, same NF4
    configuration), the adapter attached unmerged, as the reference app answers."""
    from peft import PeftModel

    from ff_lib.inference.bases import load_model
    from ff_lib.inference.quiet import quiet_libraries

    model, tokenizer, _ = load_model(str(base), str(base), mode)
    with quiet_libraries():
        peft_model = PeftModel.from_pretrained(model, str(adapter))
    peft_model.eval()
    return peft_model, tokenizer


@dataclass(frozen=True)
class ReferenceSizes:
    """How the reference is timed: new tokens, repeats, repetition penalty (as our replies)."""

    new_tokens: int
    repeats: int
    penalty: float = 1.15


class _Clock:
    """A generate() streamer that only notes when each new token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate puts the prompt first
            self.prompt_seen = True
            return
        sync()
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


@dataclass
class TimedRun:
    """One reference reply timed from inside generate: first token, then the rate after it."""

    seconds: float
    ttft_s: float
    decode_tokens_per_s: float


def in_thread(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a worker thread, as the reference app ran generate (and as our
    engine's worker runs): on a CPU, small ops in the main thread paid torch's intra-op start-up
    many times over (5x slower on the demo), which would make the reference look slower."""
    out: list = []
    errors: list[BaseException] = []

    def work():
        try:
            out.append(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def timed_generate(model, ids: list[int], new_tokens: int, penalty: float) -> TimedRun:
    """One greedy reference reply in a worker thread, timed token by token."""
    clock = _Clock()
    started = time.perf_counter()
    in_thread(plain_generate, model, ids, new_tokens, streamer=clock, penalty=penalty)
    first, last = clock.times[0], clock.times[-1]
    rate = (len(clock.times) - 1) / max(last - first, 1e-9)
    return TimedRun(last - started, first - started, rate)


@dataclass
class PlainRun:
    """One reference `generate` call."""

    tokens: list[int]
    seconds: float


def plain_generate(model, ids: list[int], new_tokens: int, streamer=None, penalty=1.0):
    """Greedy `generate` forced to `new_tokens` tokens (the reference path)."""
    dev = model.get_input_embeddings().weight.device
    inp = torch.tensor([ids], device=dev)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=inp,
            attention_mask=torch.ones_like(inp),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            repetition_penalty=penalty,
            pad_token_id=0,
            streamer=streamer,
        )
    sync()
    return PlainRun(out[0, len(ids) :].tolist(), time.perf_counter() - t0)


def stream_plain_generate(model, tokenizer, ids: list[int], new_tokens: int, penalty=1.0) -> float:
    """Seconds for the reference's streamed reply: generate in a thread + TextIteratorStreamer."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=600)
    errors: list[BaseException] = []

    def work():
        try:
            plain_generate(model, ids, new_tokens, streamer=streamer, penalty=penalty)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
            streamer.end()

    t0 = time.perf_counter()
    thread = threading.Thread(target=work)
    thread.start()
    for _ in streamer:
        pass
    thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def logit_gap(model, ids: list[int], prefix: list[int], ours: int, theirs: int) -> dict:
    """At a greedy disagreement: the plain forward's logit gap between its pick and ours, next
    to the logits' spread (a gap far below the spread is a bf16 near-tie, not a bug)."""
    dev = model.get_input_embeddings().weight.device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + prefix], device=dev)).logits[0, -1].float()
    return {
        "gap": float(logits[theirs] - logits[ours]),
        "logit_std": float(logits.std()),
    }


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def measure_reference(base: Path, adapter: Path, mode: str, ids: list[int], ours: dict, sizes):
    """The reference app on the same weights: its switch (base reload + adapter), time to first
    token, decode rate plain and streamed (repetition penalty `sizes.penalty`), and where its
    greedy tokens first differ from ours (`ours`: {"adapter": ids, "base": ids})."""
    free_memory()
    started = time.perf_counter()
    peft_model, tokenizer = load_reference(base, adapter, mode)
    sync()
    out = {"reference_switch_s": time.perf_counter() - started}
    n, penalty = sizes.new_tokens, sizes.penalty
    in_thread(plain_generate, peft_model, ids, 2)  # the first call pays for setup
    runs = [timed_generate(peft_model, ids, n, penalty) for _ in range(sizes.repeats)]
    plain_s = statistics.median(r.seconds for r in runs)
    streamed = stream_plain_generate(peft_model, tokenizer, ids, n, penalty=penalty)
    out.update(
        reference_ttft_s=statistics.median(r.ttft_s for r in runs),
        reference_decode_tokens_per_s=statistics.median(r.decode_tokens_per_s for r in runs),
        reference_stream_tokens_per_s=n / streamed,
        reference_plain_tokens_per_s=n / plain_s,
        reference_stream_overhead=streamed / plain_s - 1,
    )
    out.update(_greedy_agreement(peft_model, ids, ours))
    del peft_model
    free_memory()
    return out


def _greedy_agreement(peft_model, ids: list[int], ours: dict) -> dict:
    """First index where our greedy tokens and plain generate's differ (None: never), and the
    logit gap there."""
    from contextlib import nullcontext

    differences, gaps = {}, {}
    for label, key in (("adapter_vs_peft_generate", "adapter"), ("base_vs_generate", "base")):
        mine = ours[key]
        context = peft_model.disable_adapter() if key == "base" else nullcontext()
        with context:
            theirs = in_thread(plain_generate, peft_model, ids, len(mine)).tokens
            k = first_difference(mine, theirs)
            if k is not None and k < min(len(mine), len(theirs)):
                gaps[label] = logit_gap(peft_model, ids, theirs[:k], mine[k], theirs[k])
        differences[label] = k
    return {
        "greedy_first_difference": differences,
        "greedy_tokens_compared": len(ours["adapter"]),
        "greedy_disagreement_gaps": gaps,
    }
