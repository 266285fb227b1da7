"""Library chatter kept out of the user's terminal and the server's log.

Importing this module (every engine module does, before bitsandbytes or peft loads) installs
the filters once for the process: bitsandbytes' "kernels" line is dropped (CPU 4-bit kernels are
an optional extra we do not use), and PEFT's "Unexpected keyword arguments" warning becomes one
line that says what it means, once per set of keys.
"""

import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# bitsandbytes logs this at WARNING on every CPU import: `kernels` is an optional download.
_BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
_BNB_KERNELS = re.compile(r"kernels-community|pip install kernels")
_PEFT_UNKNOWN_KEYS = re.compile(r"Unexpected keyword arguments (\[[^\]]*\]) for class (\w+)")
_SHOWN: set[str] = set()
_LOCK = threading.Lock()
_INSTALLED: list[bool] = []


class _DropKernelsLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _BNB_KERNELS.search(record.getMessage())


def peft_unknown_keys_note(message: str) -> str | None:
    """The one line shown for PEFT's warning about adapter_config.json keys it does not know."""
    match = _PEFT_UNKNOWN_KEYS.search(message)
    if match is None:
        return None
    from peft import __version__ as peft_version

    return (
        f"warning: an adapter_config.json has settings {match[1]} that PEFT {peft_version} "
        f"does not know ({match[2]}); they are ignored. The adapter was saved by a newer "
        "PEFT: if its replies look wrong, upgrade peft."
    )


def _show_once(message, category, filename, lineno, file=None, line=None) -> None:
    note = peft_unknown_keys_note(str(message))
    if note is None:
        _ORIGINAL_SHOWWARNING(message, category, filename, lineno, file, line)
        return
    with _LOCK:
        if note in _SHOWN:
            return
        _SHOWN.add(note)
    print(note, file=file or sys.stderr, flush=True)


_ORIGINAL_SHOWWARNING = warnings.showwarning


def install_filters() -> None:
    """Install the process-wide filters (idempotent)."""
    with _LOCK:
        if _INSTALLED:
            return
        _INSTALLED.append(True)
    logging.getLogger(_BNB_LOGGER).addFilter(_DropKernelsLine())
    # peft 0.21 asks transformers 5 a deprecated question: nothing the user can act on.
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    # Every occurrence reaches _show_once, which says it once per set of keys.
    warnings.filterwarnings("always", message="Unexpected keyword arguments", category=UserWarning)
    warnings.showwarning = _show_once


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """No transformers progress bars inside the block (loads, saves, training)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    yield


install_filters()
