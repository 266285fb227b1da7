"""Loaded at start-up by an app server whose PYTHONPATH starts with this folder (the Stop tests):
each decode step of the engine waits a little, so a reply is still being written when the test
presses Stop. The demo model decodes hundreds of tokens a second; a human's Stop lands mid-reply,
a test's click after a rerun might not."""

import time

from ff_lib.inference import decode

STEP_DELAY_S = 0.02
_decode = decode.BatchedLM.decode


def _slow_decode(self, *args, **kwargs):
    time.sleep(STEP_DELAY_S)
    return _decode(self, *args, **kwargs)


decode.BatchedLM.decode = _slow_decode
