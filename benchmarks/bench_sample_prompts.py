"""Median time of sample_prompts(k=5) on a 1,000,000-row dataset in a temp workspace.

Run: .venv/bin/python benchmarks/bench_sample_prompts.py [ROWS]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ff_lib.data.bench import time_sample_prompts  # noqa: E402


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    query_ms = time_sample_prompts(rows=rows, repeats=20)
    call_ms = time_sample_prompts(rows=rows, repeats=20, include_open=True)
    print(f"sample_prompts k=5 on {rows:,} rows: median {query_ms:.2f} ms (reservoir query)")
    print(f"  whole Workspace.sample_prompts call incl. DuckDB open + close: {call_ms:.2f} ms")


if __name__ == "__main__":
    main()
