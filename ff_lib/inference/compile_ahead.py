"""The decode step's compiled kernels, built while the base's weights load.

The first reply after a load used to wait for torch.compile of the step's element-wise chains
(seconds, once per process). They depend only on the base's widths, its norm epsilon and the
dtype, so a one-layer stand-in of the base (its config, random weights, a small vocabulary) can
build them on the GPU while the real weights are still being read; the real warm-up then finds
them compiled and only captures its graphs.
"""

import logging
import threading

log = logging.getLogger(__name__)

STAND_IN_VOCAB = 4096


def start_compile_ahead(source: str, trust_remote_code: bool) -> threading.Thread | None:
    """A thread building the kernels on a stand-in of the base at `source`; None when the step
    is not compiled (FF_COMPILE=0) or there is no GPU."""
    import torch

    from ff_lib.inference.ops import compile_wanted

    if not (torch.cuda.is_available() and compile_wanted()):
        return None
    thread = threading.Thread(
        target=_compile_on_stand_in, args=(source, trust_remote_code), name="ff-compile-ahead"
    )
    thread.start()
    return thread


def stand_in(source: str, trust_remote_code: bool, device: str = "cuda:0"):
    """A one-layer bf16 model of the base's config with random weights and a small vocabulary.

    Touches no process-wide state: the real base loads in another thread meanwhile, and
    from_config with a dtype (the config's own, by default) sets torch's default dtype for
    the whole process while it builds (the real base then got float32 norm weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ff_lib.inference.quiet import quiet_libraries

    with quiet_libraries():
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        config.num_hidden_layers = 1
        config.vocab_size = min(config.vocab_size, STAND_IN_VOCAB)
        config.pad_token_id = None
        config.dtype = None  # from_config then leaves torch's default dtype alone
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return model.to(torch.bfloat16).eval()


def _compile_on_stand_in(source: str, trust_remote_code: bool) -> None:
    from ff_lib.errors import FFError
    from ff_lib.inference.decode import BatchedLM

    try:
        batched = BatchedLM(
            stand_in(source, trust_remote_code), 1, 1024, 1, use_graphs=True, compile_ops=True
        )
        batched.compile_ahead()
    except (FFError, OSError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        # Only speed is at stake: the warm-up compiles as before. Said in the log.
        log.warning("Compiling the decode step ahead of the load failed (%s); the warm-up "
                    "after the load compiles it instead.", exc)  # fmt: skip
