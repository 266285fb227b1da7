"""Median time of sample_prompts(k=5) on a 1,000,000-row dataset in a temp workspace.

Run: .venv/bin/python benchmarks/bench_sample_prompts.py [ROWS]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ff_lib.data.bench import time_sample_prompts  # noqa: E402


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    ms = time_sample_prompts(rows=rows, repeats=20)
    print(f"sample_prompts k=5 on {rows:,} rows (median ms):")
    print(f"  in a page rerun's session: {ms['in_session']:.2f}")
    print(f"  the reservoir query alone: {ms['query']:.2f}")
    print(f"  a lone call, DuckDB open + close included: {ms['with_open']:.2f}")


if __name__ == "__main__":
    main()
