"""`python -m ff_lib bench --model demo` times the app's door on the CPU and writes every figure
it promises; the base is bit-exact after 1,000 slot loads. No timing is asserted here."""

import json
from types import SimpleNamespace

import pytest

from ff_lib.bench_door import full_length, prompt_messages
from ff_lib.cli import main
from ff_lib.errors import GenerationError
from ff_lib.inference import benchmodels
from ff_lib.inference.prompts import encode, render

# Figures that are a number on every device.
NUMBERS = (
    "load_s",
    "warm_up_s",
    "first_token_after_load_s",
    "first_text_after_load_s",
    "first_adapter_into_slot_s",
    "first_prefill_s",
    "ttft_s",
    "decode_tokens_per_s",
    "ttft_long_s",
    "decode_tokens_per_s_long",
    "prompt_tokens",
    "prompt_tokens_long",
    "switch_s",
    "switch_ttft_s",
    "same_adapter_ttft_s",
    "switch_recaptures",
    "adapter_load_s",
    "resident_gib_per_adapter",
    "base_memory_gib",
    "kv_cache_gib",
    "weight_bytes_per_token",
    "sequential_tokens_per_s",
    "batch_speedup_8",
    "second_request_ttft_s",
    "scorecard_rows_per_s",
    "scorecard_sequential_rows_per_s",
    "reference_switch_s",
    "reference_ttft_s",
    "reference_decode_tokens_per_s",
    "reference_plain_tokens_per_s",
    "reference_stream_tokens_per_s",
    "reference_stream_overhead",
    "switch_speedup",
    "sample_prompts_ms",
    "context",
    "max_rows",
)
# Figures only a CUDA device has (copy bandwidth, the floor, the allocator's count).
CUDA_ONLY = (
    "bandwidth_gb_s",
    "floor_tokens_per_s",
    "percent_of_floor",
    "percent_of_floor_long",
    "memory_per_adapter_gib",
)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_bench_demo_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--model", "demo",
            "--prompt-tokens", "24",
            "--new-tokens", "8",
            "--batch-new-tokens", "6",
            "--scorecard-prompts", "2",
            "--scorecard-new-tokens", "4",
            "--reference-new-tokens", "4",
            "--repeats", "1",
            "--sample-rows", "1000",
            "--page-messages", "0",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "decode tokens/s, batch 1" in printed and "rows together" in printed
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    for key in NUMBERS:
        assert _is_number(result[key]), key
    for key in CUDA_ONLY:
        assert key in result and result[key] is None, key
    assert set(result["batch_tokens_per_s"]) == {"1", "2", "4", "8"}  # 16 only on CUDA
    assert all(_is_number(v) for v in result["batch_tokens_per_s"].values())
    assert set(result["peak_memory_gib"]) == {"1", "2", "4"}
    assert all(_is_number(v) for v in result["peak_memory_gib"].values())
    # The long prompt is the longest the demo's context leaves room for beside the reply.
    assert result["prompt_tokens_long"] <= result["context"] - 8 < result["prompt_tokens_long"] + 8
    drift = result["drift_after_switches"]
    assert drift["switches"] == 1000 and drift["slot_loads"] == 1000
    assert drift["changed_fraction"] == 0 and drift["elements"] > 0
    assert drift["base_logits_identical"] is True
    assert result["switch_recaptures"] == 0
    # float32 on the CPU: our door's greedy tokens equal peft + generate's, adapter and base.
    assert result["greedy_first_difference"] == {
        "adapter_vs_peft_generate": None,
        "base_vs_generate": None,
    }
    assert result["page_rerun_ms"] is None and result["page_rerun_reason"]


def test_bench_refuses_bf16_without_a_gpu(capsys):
    assert main(["bench", "--model", "demo", "--quantization", "bf16"]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_timed_prompt_fits_its_token_count(tmp_path):
    base, _ = benchmodels.build_models("demo", tmp_path, rank=8, n_adapters=0)
    tokenizer = benchmodels.tokenizer_of(base)
    for target in (24, 200):
        messages = prompt_messages(tokenizer, target, seed=1)
        count = len(encode(tokenizer, render(tokenizer, messages)[0]))
        assert target - 8 < count <= target


def test_a_reply_that_ended_early_is_refused_not_timed():
    stats = SimpleNamespace(new_tokens=3)
    early = SimpleNamespace(
        finish_reason="eos", stats=stats, max_new_tokens=8, truncated_tokens=0, dropped_turns=0
    )
    with pytest.raises(GenerationError, match="ended after 3 of 8 tokens"):
        full_length(early)
