"""Writing what a FineFoundry database holds into the workspace, saying every choice made."""

import time
from pathlib import Path

import duckdb

from ff_lib.data import store
from ff_lib.data.finefoundry import (
    SOURCE_DATABASE,
    SOURCE_HUGGING_FACE,
    STATUS_MAP,
    ForeignDataset,
    ForeignRun,
)
from ff_lib.data.models import Dataset, FineFoundryImport, TrainingRun


def _unique_name(name: str, taken: dict[str, int]) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def _zone_note() -> str:
    zones = "/".join(dict.fromkeys(time.tzname))
    return (
        "started/completed times are FineFoundry's local clock times (it stores no zone); "
        f"they were read in this machine's time zone ({zones})"
    )


def _import_datasets(
    con: duckdb.DuckDBPyConnection, source_db: Path, found: list[ForeignDataset], result
) -> dict[str, int]:
    """Each scrape session once; returns FineFoundry session id -> workspace dataset id."""
    by_session: dict[str, int] = {}
    for fd in found:
        source = f"finefoundry:{source_db}#session={fd.session_id}"
        existing = store.find_dataset_by_source(con, source)
        if existing is not None:
            by_session[fd.session_id] = existing.id
            result.skipped.append(f"dataset {fd.name!r}: already imported as dataset {existing.id}")
            continue
        if not any(p and p.strip() for p in fd.prompts):
            result.skipped.append(
                f"dataset {fd.name!r} (session {fd.session_id}): it has no pair with a prompt"
            )
            continue
        dataset_id = store.insert_dataset(con, fd.name, source, fd.created_at or store.utcnow())
        written = store.insert_pairs(con, dataset_id, fd.prompts, fd.responses)
        by_session[fd.session_id] = dataset_id
        dataset: Dataset = store.finish_dataset(con, dataset_id, len(fd.prompts) - written)
        result.datasets.append(dataset)
    return by_session


def _dataset_link(
    fr: ForeignRun, by_session: dict[str, int], notes: list[str]
) -> tuple[int | None, dict]:
    """The workspace dataset a run was trained on (or None, with a note saying why) and the
    params that keep a dataset that is not in the workspace visible."""
    label = f"run {fr.name!r}"
    if fr.dataset_source == SOURCE_DATABASE and fr.dataset_ref is not None:
        linked = by_session.get(fr.dataset_ref)
        if linked is None:
            notes.append(
                f"{label}: trained on FineFoundry scrape session {fr.dataset_ref}, which this "
                "database no longer holds; no dataset is linked"
            )
        return linked, {}
    if fr.dataset_source == SOURCE_HUGGING_FACE and fr.dataset_ref is not None:
        notes.append(
            f"{label}: trained on the Hugging Face dataset {fr.dataset_ref!r}, not on a "
            "dataset of this workspace; its id is kept in the run's params (hf_dataset_id)"
        )
        return None, {"hf_dataset_id": fr.dataset_ref}
    if fr.dataset_source or fr.dataset_ref:
        recorded = " ".join(repr(v) for v in (fr.dataset_source, fr.dataset_ref) if v)
        notes.append(
            f"{label}: FineFoundry recorded its dataset as {recorded}, which is not a scrape "
            "session of this database; no dataset is linked"
        )
    return None, {}


def _our_status(fr: ForeignRun) -> str | None:
    """Our word for FineFoundry's status, or None for a word it does not write."""
    return None if fr.status is None else STATUS_MAP.get(str(fr.status).strip().lower())


def _reimport_note(fr: ForeignRun, existing: TrainingRun) -> str:
    text = f"run {fr.name!r}: already imported as run {existing.id}"
    ours = _our_status(fr)
    if ours is not None and ours != existing.status:
        text += (
            f" (FineFoundry now says {ours}, the workspace says {existing.status}: "
            f"`runs set-status {existing.id} {ours}` moves it on)"
        )
    return text


def _import_run(con, source_db: Path, fr: ForeignRun, by_session, taken, result) -> None:
    existing = store.find_finefoundry_run(con, str(source_db), fr.source_id)
    if existing is not None:
        result.skipped.append(_reimport_note(fr, existing))
        return
    status = _our_status(fr)
    if status is None:
        result.skipped.append(
            f"run {fr.name!r} (FineFoundry id {fr.source_id}): its status {fr.status!r} is not "
            f"one FineFoundry writes ({', '.join(STATUS_MAP)}); not imported rather than guessed "
            "— set it in FineFoundry, or register the adapter with `runs add`"
        )
        return
    name = _unique_name(fr.name, taken)
    if name != fr.name:
        note = (
            f"run {fr.name!r} (FineFoundry id {fr.source_id}) imported as {name!r}: "
            f"the name is taken by run {taken[fr.name]}"
        )
        result.notes.append(note)
        result.renamed.append(note)
    dataset_id, dataset_params = _dataset_link(fr, by_session, result.notes)
    params = {**dataset_params, **fr.params}
    params.update(finefoundry_id=fr.source_id, finefoundry_db=str(source_db))
    if status == "completed" and fr.adapter_path and not Path(fr.adapter_path).exists():
        result.notes.append(f"run {name!r}: its adapter {fr.adapter_path} is not on this machine")
    run = store.insert_run(
        con,
        name=name,
        status=status,
        base_model=fr.base_model,
        dataset_id=dataset_id,
        adapter_path=fr.adapter_path,
        params=params,
        metrics=fr.metrics,
        created_at=fr.created_at or fr.started_at or store.utcnow(),
        started_at=fr.started_at,
        completed_at=fr.completed_at,
    )
    taken[name] = run.id
    result.runs.append(run)


def import_finefoundry(
    con: duckdb.DuckDBPyConnection,
    source_db: Path,
    runs: list[ForeignRun],
    datasets: list[ForeignDataset],
) -> FineFoundryImport:
    """Inside the caller's transaction: sessions first (runs link to them), then runs."""
    result = FineFoundryImport()
    by_session = _import_datasets(con, source_db, datasets, result)
    taken = store.run_names(con)
    for fr in runs:
        _import_run(con, source_db, fr, by_session, taken, result)
    added = {r.params["finefoundry_id"] for r in result.runs}
    if any(fr.local_times for fr in runs if fr.source_id in added):
        result.notes.append(_zone_note())
    return result
