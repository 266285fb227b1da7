"""The stand-in the decode step is compiled on while the real base loads (CUDA only in the app;
built here on CPU) touches no process-wide state the loading thread depends on."""

import torch

from ff_lib.inference import compile_ahead


def test_the_stand_in_never_sets_torchs_default_dtype(tiny_base, monkeypatch):
    calls = []
    real = torch.set_default_dtype
    monkeypatch.setattr(torch, "set_default_dtype", lambda d: (calls.append(d), real(d)))
    model = compile_ahead.stand_in(str(tiny_base), False, device="cpu")
    assert calls == []  # a load in another thread would have taken this dtype for its weights
    assert model.config.num_hidden_layers == 1
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_the_compiled_ops_compile_in_this_process(monkeypatch):
    """torch's pool of compile workers (a process per core) starved the first reply of CPU
    while it started (a 3 s slot load on the H200): the engine's compiles run in-process."""
    import torch._inductor.config as inductor

    from ff_lib.inference import ops

    monkeypatch.setattr(inductor, "compile_threads", 16)
    monkeypatch.setattr(ops, "_COMPILED", {})
    ops.compiled_ops()
    assert inductor.compile_threads == 1
