"""The decode step's element-wise chains (RMSNorm, residual add + norm, rotary, SiLU gating),
written with exactly Llama's arithmetic, and their compiled versions (one set per process)."""

import functools
import logging
import os
import threading

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Exactly LlamaRMSNorm's arithmetic.
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _add_rms_norm(x, y, weight, eps):
    """(x + y, its RMS norm): the residual add fused with the next norm when compiled."""
    x = x + y
    return x, _rms_norm(x, weight, eps)


def _silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    half = gate_up.shape[-1] // 2
    return F.silu(gate_up[:, :half]) * gate_up[:, half:]


def _rope_qk(q, k, cos, sin):
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def repetition_penalized(logits, seen, penalty):
    """transformers' repetition penalty: seen tokens' logits divided by `penalty` (multiplied
    when negative). logits (rows, vocab), seen (rows, vocab) bool, penalty (rows, 1). The one
    arithmetic of the host sampler and the decode step's device-side tail (chains rely on it)."""
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


EAGER_OPS = {"norm": _rms_norm, "add_norm": _add_rms_norm, "silu_mul": _silu_mul, "rope": _rope_qk}


_COMPILED: dict = {}
_COMPILED_LOCK = threading.Lock()


def compiled_ops() -> dict:
    """The small element-wise chains compiled (one kernel each instead of ~7): a graph replays
    a step of ~25 kernels a layer instead of ~50. Only on CUDA (Triton); shapes become dynamic
    after the first recompile, so a few buckets cost two compiles each function. One set per
    process: what `compile_ahead` built on a stand-in is what every engine then finds."""
    with _COMPILED_LOCK:
        if not _COMPILED:
            # Each function meets a few variants per base (row buckets, a LoRA group's output
            # as a strided view, NF4's dtypes) and a process may load several bases: torch's
            # default of 8 recompiles would end in an error mid-reply.
            config = torch._dynamo.config
            config.recompile_limit = max(config.recompile_limit, 64)
            _compile_in_process()
            _COMPILED.update(
                {name: torch.compile(fn, fullgraph=True) for name, fn in EAGER_OPS.items()}
            )
        return _COMPILED


def _compile_in_process() -> None:
    """Compile in this process, without torch's pool of compile workers (said in the log). The
    pool (a process per CPU core, each importing torch) was still starting when the first request
    arrived and left no CPU free: on the H200 machine (16 cores) the first adapter's read into a
    slot took 3.1 s instead of 0.05 s, in six runs of ten. The few kernels compiled here take
    no longer in one process, and they are built while the base's weights load."""
    import torch._inductor.config as inductor

    if inductor.compile_threads != 1:
        inductor.compile_threads = 1
        log.info("torch.compile runs in this process (no compile workers): they starved the "
                 "first reply of CPU while they started.")  # fmt: skip


def env_switch(name: str) -> bool:
    """An on-by-default switch of the engine: off when the variable is 0/false/no/off."""
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def compile_wanted() -> bool:
    """Whether the decode step's element-wise chains are compiled on CUDA (FF_COMPILE=0: no)."""
    return env_switch("FF_COMPILE")


@functools.cache
def flash_gqa(device: torch.device, head_dim: int) -> bool:
    """Whether SDPA's flash attention runs for this head size on `device` (CUDA, compute
    capability 8.0 or newer, a head size of at most 256 and a multiple of 8) and so takes
    grouped KV heads as they are; elsewhere memory-efficient attention runs, which needs the
    heads repeated (torch would otherwise fall back to the math kernel, which holds a whole
    (heads, tokens, tokens) score matrix)."""
    if device.type != "cuda" or head_dim > 256 or head_dim % 8:
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)
