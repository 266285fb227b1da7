"""Timing sample_prompts on a large synthetic dataset (for the `bench` command and script)."""

import statistics
import tempfile
import time
from pathlib import Path

from ff_lib.data import db, store
from ff_lib.data.workspace import Workspace


def build_synthetic_workspace(folder: Path, rows: int) -> tuple[Workspace, int]:
    """A workspace in `folder` holding one dataset of `rows` generated pairs; (ws, dataset id)."""
    ws = Workspace.open(folder)
    with db.transaction(ws.db_path, ws.busy_timeout_s) as con:
        dataset_id = store.insert_dataset(con, f"synthetic {rows:,}", "bench", store.utcnow())
        store.insert_synthetic_rows(con, dataset_id, rows)
        store.finish_dataset(con, dataset_id, 0)
    return ws, dataset_id


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm: the first call pays for reading the catalog from disk
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def time_sample_prompts(rows: int = 1_000_000, repeats: int = 20, k: int = 5) -> dict[str, float]:
    """Median ms of a k-row reservoir sample on a `rows`-row dataset, three ways:
    `in_session`: Workspace.sample_prompts as a page rerun calls it (file opened once per rerun);
    `with_open`: a lone call that opens and closes the file (DuckDB's open dominates it);
    `query`: the SQL alone."""
    with tempfile.TemporaryDirectory(prefix="ff-bench-") as tmp:
        ws, dataset_id = build_synthetic_workspace(Path(tmp), rows)
        with_open = _median_ms(lambda: ws.sample_prompts(dataset_id, k), repeats)
        with ws.session():
            in_session = _median_ms(lambda: ws.sample_prompts(dataset_id, k), repeats)
        with db.connection(ws.db_path, ws.busy_timeout_s) as con:
            query = _median_ms(lambda: store.sample_pairs(con, dataset_id, k), repeats)
    return {"in_session": in_session, "with_open": with_open, "query": query}
