"""Library chatter kept out of the user's terminal and the server's log."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """No transformers progress bars, and no peft 0.21 deprecation warning (it asks transformers
    5 a deprecated question; nothing the user can act on) inside the block."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield
