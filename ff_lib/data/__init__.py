"""The DuckDB workspace: schema and migrations, runs, datasets, conversations; importers."""

from ff_lib.data.db import DEFAULT_BUSY_TIMEOUT_S
from ff_lib.data.models import (
    MESSAGE_ROLES,
    MESSAGE_STATUSES,
    RUN_STATUSES,
    Conversation,
    Dataset,
    FineFoundryImport,
    Message,
    SamplePair,
    ScanResult,
    Scorecard,
    TrainingRun,
)
from ff_lib.data.workspace import DB_FILE, Workspace

__all__ = [
    "DB_FILE",
    "DEFAULT_BUSY_TIMEOUT_S",
    "MESSAGE_ROLES",
    "MESSAGE_STATUSES",
    "RUN_STATUSES",
    "Conversation",
    "Dataset",
    "FineFoundryImport",
    "Message",
    "SamplePair",
    "ScanResult",
    "Scorecard",
    "TrainingRun",
    "Workspace",
]
