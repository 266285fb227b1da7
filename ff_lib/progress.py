"""Progress lines with an ETA for long loops (demo build, training), so a first start never
looks hung."""

import time
from collections.abc import Callable
from typing import Any


class StepProgress:
    """Call it after each step: it emits a line at the first step, then at most one every
    `every_s` seconds, and one at the last step.

    "training capitals-lora: step 40/200 · loss 1.234 · 12 s, about 48 s left"
    """

    def __init__(
        self,
        label: str,
        emit: Callable[[str], Any],
        every_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.emit = emit
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.last_emitted: float | None = None
        # (step, time) of the first call: the rate is measured from there, so the time spent
        # before the first step (loading a model) does not inflate every estimate.
        self.first: tuple[int, float] | None = None

    def __call__(self, step: int, steps: int, loss: float | None = None) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (step, now)
        due = self.last_emitted is None or now - self.last_emitted >= self.every_s
        if not (due or step >= steps):
            return
        self.last_emitted = now
        self.emit(self.line(step, steps, loss, now))

    def line(self, step: int, steps: int, loss: float | None, now: float) -> str:
        parts = [f"{self.label}: step {step}/{steps}"]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        elapsed = now - self.started
        first_step, first_time = self.first or (step, now)
        if step >= steps:
            parts.append(f"done in {elapsed:.0f} s")
        elif step == first_step:
            parts.append(f"{elapsed:.0f} s")
        else:
            left = (now - first_time) / (step - first_step) * (steps - step)
            parts.append(f"{elapsed:.0f} s, about {left:.0f} s left")
        return " · ".join(parts)
