"""The workspace: a folder holding ff.duckdb, and every operation on it (one connection each)."""

import dataclasses
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ff_lib.data import (
    db,
    finefoundry_import,
    importers,
    migrations,
    store,
)
from ff_lib.data.evaluation_records import EvaluationRecords
from ff_lib.data.finefoundry import read_finefoundry
from ff_lib.data.models import (
    CONVERSATION_SOURCES,
    MESSAGE_ROLES,
    MESSAGE_STATUSES,
    RUN_STATUSES,
    Conversation,
    Dataset,
    FineFoundryImport,
    Message,
    SamplePair,
    ScanResult,
    TrainingRun,
)
from ff_lib.data.scan import find_adapters
from ff_lib.errors import InvalidInput, NotFound, WorkspaceError

DB_FILE = "ff.duckdb"


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    return value.strip()


def _status(status: str) -> str:
    if status not in RUN_STATUSES:
        raise InvalidInput(f"unknown run status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    return status


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _base(base_model: str) -> str:
    """A base model as stored: a local folder by its absolute path, else the id as given."""
    base_model = _text(base_model, "base model")
    folder = Path(base_model).expanduser()
    return str(folder.resolve()) if folder.is_dir() else base_model


def _free_name(con: duckdb.DuckDBPyConnection, name: str, run_id: int | None = None) -> str:
    """`name`, or InvalidInput naming the run that has it and a free name to use instead."""
    existing = store.find_run_by_name(con, name)
    if existing is None or existing.id == run_id:
        return name
    raise InvalidInput(
        f"a run named {name!r} already exists (run {existing.id}): choose another name, "
        f"e.g. {store.unique_run_name(con, name)!r}, or rename run {existing.id} first "
        f"(`runs rename {existing.id} NEW_NAME`)"
    )


def _taken_note(what: str, name: str, unique: str) -> str:
    return f"{what}: the name {name!r} is taken in this workspace, registered as {unique!r}"


@dataclass(frozen=True)
class Workspace(EvaluationRecords):
    """A workspace folder. Holds no connection: each method opens, works and closes, so other
    processes (a trainer, the CLI) can write while the app is open. Safe to share by threads."""

    path: Path
    db_path: Path
    busy_timeout_s: float = db.DEFAULT_BUSY_TIMEOUT_S

    @classmethod
    def open(
        cls, folder: str | os.PathLike, busy_timeout_s: float = db.DEFAULT_BUSY_TIMEOUT_S
    ) -> "Workspace":
        """Create the folder and ff.duckdb if needed and migrate the schema forward."""
        path = _resolved(folder)
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"workspace {path} is a file, not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the workspace folder {path}: {exc}") from exc
        ws = cls(path=path, db_path=path / DB_FILE, busy_timeout_s=busy_timeout_s)
        with db.connection(ws.db_path, busy_timeout_s) as con:
            migrations.migrate(con)
        return ws

    def session(self):
        """Share one connection between the operations inside this block (same thread).

        For a page rerun's reads: `with ws.session(): runs = ws.list_runs(); ...`. Keep it
        short; never hold it across a generation.
        """
        return db.session(self.db_path, self.busy_timeout_s)

    def _read(self):
        return db.connection(self.db_path, self.busy_timeout_s)

    def _write(self):
        return db.transaction(self.db_path, self.busy_timeout_s)

    def schema_version(self) -> int:
        """How many migrations the database has applied."""
        with self._read() as con:
            return migrations.schema_version(con)

    # --- training runs ------------------------------------------------------------------------

    def list_runs(self, limit: int | None = None) -> list[TrainingRun]:
        """Newest first."""
        with self._read() as con:
            return store.list_runs(con, limit)

    def get_run(self, run_id: int) -> TrainingRun:
        with self._read() as con:
            return self._run(con, run_id)

    @staticmethod
    def _run(con: duckdb.DuckDBPyConnection, run_id: int) -> TrainingRun:
        run = store.get_run(con, run_id)
        if run is None:
            raise NotFound(f"no training run with id {run_id} (see `runs list`)")
        return run

    @staticmethod
    def _check_dataset(con: duckdb.DuckDBPyConnection, dataset_id: int) -> Dataset:
        dataset = store.get_dataset(con, dataset_id)
        if dataset is None:
            raise NotFound(f"no dataset with id {dataset_id} (see `datasets list`)")
        return dataset

    @staticmethod
    def _check_adapter_for(status: str, adapter_path: Path | None) -> None:
        if status == "completed" and (adapter_path is None or not adapter_path.exists()):
            raise InvalidInput(
                f"a completed run needs its adapter on disk, and {adapter_path} does not exist "
                "— save the adapter first, or register the run as pending/running"
            )

    def add_run(
        self,
        name: str,
        base_model: str,
        adapter_path: str | os.PathLike,
        status: str = "completed",
        dataset_id: int | None = None,
        params: dict | None = None,
        metrics: dict | None = None,
    ) -> TrainingRun:
        """Register a run. Its adapter may be missing unless the run is completed."""
        name = _text(name, "run name")
        base_model = _text(base_model, "base model")
        status = _status(status)
        if adapter_path is None or not str(adapter_path).strip():
            raise InvalidInput("adapter path must not be empty")
        adapter = _resolved(adapter_path)
        self._check_adapter_for(status, adapter)
        now = store.utcnow()
        with self._write() as con:
            if dataset_id is not None:
                self._check_dataset(con, dataset_id)
            return store.insert_run(
                con,
                name=_free_name(con, name),
                status=status,
                base_model=base_model,
                dataset_id=dataset_id,
                adapter_path=str(adapter),
                params=params or {},
                metrics=metrics or {},
                created_at=now,
                started_at=now if status == "running" else None,
                completed_at=now if status == "completed" else None,
            )

    def set_run_status(self, run_id: int, status: str) -> TrainingRun:
        """Move a run on; `running` stamps started_at, `completed` stamps completed_at."""
        status = _status(status)
        with self._write() as con:
            run = self._run(con, run_id)
            self._check_adapter_for(status, run.adapter_path)
            return store.update_run_status(con, run_id, status, store.utcnow())

    def rename_run(self, run_id: int, name: str) -> TrainingRun:
        """Give a run a new name, one no other run has."""
        name = _text(name, "run name")
        with self._write() as con:
            self._run(con, run_id)
            return store.rename_run(con, run_id, _free_name(con, name, run_id))

    def set_run_base(self, run_id: int, base_model: str) -> TrainingRun:
        """Correct the base a run answers on (a moved folder, a local copy of a hub model)."""
        base_model = _base(base_model)
        with self._write() as con:
            self._run(con, run_id)
            return store.set_run_base(con, run_id, base_model)

    def remove_run(self, run_id: int) -> tuple[TrainingRun, int]:
        """Forget a run (its adapter files stay on disk); (the run, conversations unlinked).

        Stored conversations keep every message: each reply names its run in its meta."""
        with self._write() as con:
            run = self._run(con, run_id)
            return run, store.delete_run(con, run_id)

    def update_run_metrics(self, run_id: int, metrics: dict) -> TrainingRun:
        """Merge `metrics` into the run's stored metrics."""
        with self._write() as con:
            run = self._run(con, run_id)
            return store.update_run_metrics(con, run_id, {**run.metrics, **metrics})

    def scan_adapters(self, folder: str | os.PathLike, base_model: str | None = None) -> ScanResult:
        """Register every adapter folder under `folder` not yet registered, as completed runs.

        `base_model` overrides the base each adapter declares (a base that has moved). A name
        already taken gets a ' (2)' suffix, and `renamed` says so."""
        base_model = None if base_model is None else _base(base_model)
        found, skipped = find_adapters(folder, base_model)
        added: list[TrainingRun] = []
        renamed: list[str] = []
        with self._write() as con:
            for adapter in found:
                existing = store.find_run_by_adapter_path(con, str(adapter.path))
                if existing is not None:
                    skipped.append(
                        f"{adapter.path}: already registered as run {existing.id} ({existing.name})"
                    )
                    continue
                name = store.unique_run_name(con, adapter.name)
                if name != adapter.name:
                    renamed.append(_taken_note(str(adapter.path), adapter.name, name))
                added.append(
                    store.insert_run(
                        con,
                        name=name,
                        status="completed",
                        base_model=adapter.base_model,
                        dataset_id=None,
                        adapter_path=str(adapter.path),
                        params={"scanned_from": str(_resolved(folder))},
                        metrics={},
                        created_at=store.utcnow(),
                        started_at=None,
                        completed_at=adapter.saved_at,
                    )
                )
        return ScanResult(added=added, skipped=skipped, renamed=renamed)

    def import_finefoundry(self, db_file: str | os.PathLike) -> FineFoundryImport:
        """Runs and scrape sessions of a FineFoundry database; a re-import adds nothing."""
        source_db = _resolved(db_file)
        foreign_runs, foreign_datasets = read_finefoundry(source_db)
        with self._write() as con:
            return finefoundry_import.import_finefoundry(
                con, source_db, foreign_runs, foreign_datasets
            )

    # --- datasets -----------------------------------------------------------------------------

    def list_datasets(self) -> list[Dataset]:
        """Newest first."""
        with self._read() as con:
            return store.list_datasets(con)

    def get_dataset(self, dataset_id: int) -> Dataset:
        with self._read() as con:
            return self._check_dataset(con, dataset_id)

    def import_dataset(
        self,
        file: str | os.PathLike,
        name: str,
        prompt_column: str | None = None,
        response_column: str | None = None,
        encoding: str | None = None,
    ) -> Dataset:
        """Import a JSONL/JSON/CSV/TSV/Parquet file (.gz too) in one transaction;
        DatasetImportError leaves nothing behind. Rows left out are counted by reason."""
        name = _text(name, "dataset name")
        path = _resolved(file)
        importers.check_file(path)
        with self._write() as con:
            dataset_id = store.insert_dataset(con, name, str(path), store.utcnow())
            result = importers.import_file(
                con, path, dataset_id, prompt_column, response_column, encoding
            )
            dataset = store.finish_dataset(con, dataset_id, sum(result.skipped.values()))
        return dataclasses.replace(dataset, skipped_reasons=result.skipped, notes=result.notes)

    def add_dataset(self, name: str, pairs: list[tuple[str, str]], source: str) -> Dataset:
        """A dataset from (prompt, response) pairs; pairs with an empty prompt are skipped."""
        name = _text(name, "dataset name")
        prompts = [p for p, _ in pairs]
        responses = [r for _, r in pairs]
        with self._write() as con:
            dataset_id = store.insert_dataset(con, name, source, store.utcnow())
            written = store.insert_pairs(con, dataset_id, prompts, responses)
            return store.finish_dataset(con, dataset_id, len(pairs) - written)

    def sample_prompts(self, dataset_id: int, k: int = 5) -> list[SamplePair]:
        """k distinct random rows (fewer when the dataset is smaller), by reservoir sampling."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInput(f"k must be a whole number of at least 1, not {k!r}")
        with self._read() as con:
            self._check_dataset(con, dataset_id)
            return store.sample_pairs(con, dataset_id, k)

    def dataset_pairs(self, dataset_id: int, limit: int | None = None) -> list[SamplePair]:
        """In file order."""
        with self._read() as con:
            self._check_dataset(con, dataset_id)
            return store.dataset_pairs(con, dataset_id, limit)

    # --- conversations ------------------------------------------------------------------------

    @staticmethod
    def _conversation(con: duckdb.DuckDBPyConnection, conversation_id: str) -> Conversation:
        conversation = store.get_conversation(con, conversation_id)
        if conversation is None:
            raise NotFound(f"no conversation with id {conversation_id}")
        return conversation

    def create_conversation(
        self, title: str | None = None, run_id: int | None = None, source: str = "app"
    ) -> Conversation:
        """A new conversation; `source` 'api' for a request served by `serve`."""
        if source not in CONVERSATION_SOURCES:
            raise InvalidInput(f"unknown conversation source {source!r}")
        conversation_id = str(uuid.uuid4())
        with self._write() as con:
            if run_id is not None:
                self._run(con, run_id)
            store.insert_conversation(con, conversation_id, title, run_id, store.utcnow(), source)
            return self._conversation(con, conversation_id)

    def start_conversation(
        self,
        title: str | None,
        run_id: int | None,
        source: str,
        messages: tuple[tuple[str, str, dict], ...],
        reply_meta: dict,
    ) -> Message:
        """A new conversation holding `messages` ((role, content, meta), complete) and an
        assistant reply opened 'streaming', in one transaction; the reply's Message."""
        if source not in CONVERSATION_SOURCES:
            raise InvalidInput(f"unknown conversation source {source!r}")
        for role, _, _ in messages:
            self._check_role(role)
        conversation_id = str(uuid.uuid4())
        now = store.utcnow()
        with self._write() as con:
            if run_id is not None:
                self._run(con, run_id)
            store.insert_conversation(con, conversation_id, title, run_id, now, source)
            for role, content, meta in messages:
                store.insert_message(
                    con, conversation_id, role, content or "", "complete", meta or {}, now
                )
            return store.insert_message(
                con, conversation_id, "assistant", "", "streaming", reply_meta, now
            )

    def get_conversation(self, conversation_id: str) -> Conversation:
        with self._read() as con:
            return self._conversation(con, conversation_id)

    def list_conversations(self, limit: int = 20) -> list[Conversation]:
        """Newest activity first."""
        with self._read() as con:
            return store.list_conversations(con, limit)

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation:
        title = _text(title, "conversation title")
        with self._write() as con:
            self._conversation(con, conversation_id)
            store.rename_conversation(con, conversation_id, title, store.utcnow())
            return self._conversation(con, conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        """The conversation and all its messages."""
        with self._write() as con:
            self._conversation(con, conversation_id)
            store.delete_conversation(con, conversation_id)

    def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str,
        meta: dict | None = None,
        status: str = "complete",
    ) -> Message:
        """Append a turn (role user|assistant|system) and mark the conversation active."""
        self._check_role(role)
        self._check_message_status(status)
        now = store.utcnow()
        with self._write() as con:
            self._conversation(con, conversation_id)
            message = store.insert_message(
                con, conversation_id, role, content or "", status, meta or {}, now
            )
            store.touch_conversation(con, conversation_id, now)
            return message

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in MESSAGE_ROLES:
            raise InvalidInput(f"unknown role {role!r}: use one of {', '.join(MESSAGE_ROLES)}")

    @staticmethod
    def _check_message_status(status: str) -> None:
        if status not in MESSAGE_STATUSES:
            raise InvalidInput(
                f"unknown message status {status!r}: use one of {', '.join(MESSAGE_STATUSES)}"
            )

    def update_message(
        self, message_id: int, content: str, status: str, meta: dict | None = None
    ) -> Message:
        """Rewrite a turn (a streamed reply as it grows); meta=None keeps the stored meta."""
        self._check_message_status(status)
        with self._write() as con:
            message = store.get_message(con, message_id)
            if message is None:
                raise NotFound(f"no message with id {message_id}")
            updated = store.update_message(
                con, message_id, content or "", status, message.meta if meta is None else meta
            )
            store.touch_conversation(con, message.conversation_id, store.utcnow())
            return updated

    def messages(self, conversation_id: str) -> list[Message]:
        """Oldest first."""
        with self._read() as con:
            self._conversation(con, conversation_id)
            return store.list_messages(con, conversation_id)
