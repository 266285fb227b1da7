"""The typed results of the data layer: frozen dataclasses and the allowed values."""

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
MESSAGE_ROLES = ("user", "assistant", "system")
MESSAGE_STATUSES = ("complete", "streaming", "interrupted", "error")
CONVERSATION_SOURCES = ("app", "api")  # the pages and the CLI | `serve`


@dataclass(frozen=True)
class TrainingRun:
    """One fine-tune: where its adapter lives and how it went. Times are UTC."""

    id: int
    name: str
    status: str
    base_model: str | None
    dataset_id: int | None
    adapter_path: Path | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None


@dataclass(frozen=True)
class Dataset:
    """A named set of (prompt, response) rows; `skipped` counts rows dropped at import.

    Fresh from an import, `skipped_reasons` says why each was dropped and `notes` what the
    import chose (columns joined into the prompt, the file's encoding); not stored."""

    id: int
    name: str
    source: str
    rows: int
    created_at: dt.datetime
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class SamplePair:
    prompt: str
    response: str


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str | None
    run_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    message_count: int = 0
    source: str = "app"  # "app" | "api" (a request served by `serve`)


@dataclass(frozen=True)
class Message:
    """One chat turn; `meta` holds a reply's settings, figures and provenance."""

    id: int
    conversation_id: str
    role: str
    content: str
    status: str
    meta: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class Scorecard:
    """A run scored against a dataset: a summary and one dict per scored row."""

    id: int
    run_id: int
    dataset_id: int
    created_at: dt.datetime
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    status: str = "complete"  # 'running' | 'interrupted' | 'complete' (SCORECARD_STATUSES)


@dataclass(frozen=True)
class ScanResult:
    """Adapters registered by a folder scan, and each folder left out with its reason."""

    added: list[TrainingRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)  # "name taken: registered as 'name (2)'"


@dataclass(frozen=True)
class FineFoundryImport:
    """What a FineFoundry import added; `skipped` says what was not imported and why, `notes`
    what the import chose (a renamed run, a dataset it cannot link, how times were read)."""

    runs: list[TrainingRun] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)  # runs whose name was taken here
