"""The workspace's records of evaluations: scorecards, blind A/B votes, checkpoint sweeps.

Mixed into Workspace, whose `_read`/`_write` connections and run/dataset checks they use.
"""

import duckdb

from ff_lib.data import scorecard_store, store, sweeps, votes
from ff_lib.data.models import Scorecard
from ff_lib.errors import NotFound


class EvaluationRecords:
    """Workspace methods for what "did it work?" stores."""

    # --- scorecards ---------------------------------------------------------------------------

    def add_scorecard(
        self, run_id: int, dataset_id: int, summary: dict, rows: list[dict]
    ) -> Scorecard:
        with self._write() as con:
            self._run(con, run_id)
            self._check_dataset(con, dataset_id)
            return scorecard_store.insert_scorecard(
                con, run_id, dataset_id, summary, rows, store.utcnow()
            )

    def start_scorecard(self, run_id: int, dataset_id: int, summary: dict) -> Scorecard:
        """A scorecard with no rows yet, status 'running': answers arrive by add_scorecard_rows."""
        with self._write() as con:
            self._run(con, run_id)
            self._check_dataset(con, dataset_id)
            return scorecard_store.insert_scorecard(
                con, run_id, dataset_id, summary, [], store.utcnow(), status="running"
            )

    def add_scorecard_rows(self, scorecard_id: int, answers: list[dict]) -> int:
        """Store finished answers (a batch: one write); how many were given."""
        if not answers:
            return 0
        with self._write() as con:
            self._scorecard(con, scorecard_id)
            return scorecard_store.insert_scorecard_rows(con, scorecard_id, answers)

    def scorecard_rows(self, scorecard_id: int) -> list[dict]:
        """The stored answers of a scorecard, by row ordinal then model key."""
        with self._read() as con:
            self._scorecard(con, scorecard_id)
            return scorecard_store.list_scorecard_rows(con, scorecard_id)

    def finish_scorecard(
        self,
        scorecard_id: int,
        status: str,
        summary: dict | None = None,
        rows: list[dict] | None = None,
    ) -> Scorecard:
        """Set a scorecard's status ('running', 'interrupted', 'complete'), summary and rows."""
        if status not in scorecard_store.SCORECARD_STATUSES:
            raise ValueError(f"unknown scorecard status {status!r}")
        with self._write() as con:
            self._scorecard(con, scorecard_id)
            scorecard_store.update_scorecard(con, scorecard_id, status, summary, rows)
            return scorecard_store.get_scorecard(con, scorecard_id)

    def get_scorecard(self, scorecard_id: int) -> Scorecard:
        with self._read() as con:
            return self._scorecard(con, scorecard_id)

    @staticmethod
    def _scorecard(con: duckdb.DuckDBPyConnection, scorecard_id: int) -> Scorecard:
        card = scorecard_store.get_scorecard(con, scorecard_id)
        if card is None:
            raise NotFound(f"no scorecard with id {scorecard_id} (see the Scorecards list on Home)")
        return card

    def list_scorecards(self, run_id: int | None = None) -> list[Scorecard]:
        """Newest first; all runs' when run_id is None."""
        with self._read() as con:
            return scorecard_store.list_scorecards(con, run_id)

    # --- blind A/B votes ----------------------------------------------------------------------

    def add_vote(self, **fields) -> "votes.Vote":
        """Store one blind A/B verdict (ff_lib.data.votes.Vote's fields but id, created_at)."""
        fields = votes.checked_vote(fields)
        with self._write() as con:
            return votes.insert_vote(con, fields, store.utcnow())

    def list_votes(self, limit: int | None = None) -> list["votes.Vote"]:
        """Every vote, oldest first (at most `limit`)."""
        with self._read() as con:
            return votes.list_votes(con, limit)

    # --- checkpoint sweeps --------------------------------------------------------------------

    def add_sweep(self, document: dict) -> "sweeps.Sweep":
        """Store a checkpoint sweep (ff_lib.sweep.sweep_run's document)."""
        with self._write() as con:
            return sweeps.insert_sweep(con, document, store.utcnow())

    def list_sweeps(self, run_id: int | None = None) -> list["sweeps.Sweep"]:
        """Newest first; every run's when run_id is None."""
        with self._read() as con:
            return sweeps.list_sweeps(con, run_id)
