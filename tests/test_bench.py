"""`python -m ff_lib bench --model demo` runs on the CPU and writes every figure it promises."""

import json

from ff_lib.cli import main

KEYS = (
    "device",
    "load_s",
    "switch_s",
    "reference_switch_s",
    "ttft_s",
    "decode_tokens_per_s",
    "reference_decode_tokens_per_s",
    "stream_overhead",
    "sample_prompts_ms",
    "page_rerun_ms",
    "bandwidth_gb_s",
    "floor_tokens_per_s",
)


def test_bench_demo_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--model", "demo",
            "--prompt-tokens", "8",
            "--new-tokens", "6",
            "--reference-new-tokens", "4",
            "--sample-rows", "1000",
            "--page-messages", "4",
            "--repeats", "1",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "decode tokens/s" in printed and "adapter switch" in printed
    result = json.loads(out.read_text())
    for key in KEYS:
        assert key in result, key
    assert result["device"] == "cpu"
    assert result["bandwidth_gb_s"] is None and result["floor_tokens_per_s"] is None  # CPU
    # device is a name; bandwidth and floor are CUDA-only; the page rerun may be unmeasured
    not_numbers_here = {"device", "bandwidth_gb_s", "floor_tokens_per_s", "page_rerun_ms"}
    for key in set(KEYS) - not_numbers_here:
        assert isinstance(result[key], int | float), key
    assert set(result["peak_memory_gib"]) == {"1", "2", "4"}
    assert all(isinstance(v, float) for v in result["peak_memory_gib"].values())
    assert result["switch_recaptures"] == 0
    # The fast loop's greedy tokens equal generate()'s on the same weights.
    assert result["greedy_first_difference"]["merged_adapter_vs_generate"] is None
    assert result["greedy_first_difference"]["base_vs_generate"] is None
    assert result["page_rerun_ms"] is None or result["page_rerun_ms"] > 0
