"""Optuna storage for a search that may be killed and re-run: trials it left RUNNING become FAIL.

Hydra's Optuna sweeper drives the study with ask/tell, which keeps no heartbeat, so a search
killed mid-trial (SIGKILL, OOM killer, a lost node) leaves that trial RUNNING forever: the
study counts it, no sampler learns from it, and ``optuna`` reports it as still in progress.
``conf/hparams_search/optuna.yaml`` builds this storage (``hydra.sweeper.storage._target_``):
it beats for the trials this process runs, and on loading a study it fails the RUNNING trials
whose beat stopped. Trials with a fresh beat belong to another search sharing the storage
(Optuna's way to run a search in parallel) and are left alone.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any

from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)


class ResumableStorage(RDBStorage):
    """An ``RDBStorage`` (SQLite by default) whose running trials keep a heartbeat.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////abs/path/optuna.db``.
        heartbeat_interval: seconds between two beats of a trial this process runs.
        grace_period: seconds without a beat after which a RUNNING trial is taken as
            abandoned (default: twice the interval).
    """

    def __init__(self, url: str, heartbeat_interval: int = 10, grace_period: int | None = None) -> None:
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna 2.x
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period or 2 * heartbeat_interval)
        self._owned: set[int] = set()
        self._owned_lock = threading.Lock()
        self._beater: threading.Thread | None = None

    def get_study_id_from_name(self, study_name: str) -> int:
        """Load a study (a resumed search) and fail the trials a dead search left RUNNING."""
        study_id = super().get_study_id_from_name(study_name)
        for trial_id, number, idle in self.abandoned_trials(study_id):
            try:
                failed = self.set_trial_state(trial_id, TrialState.FAIL)
            except RuntimeError:  # finished meanwhile by a search that was slow, not dead
                failed = False
            if failed:
                age = "no heartbeat" if idle is None else f"no heartbeat for {idle:.0f} s"
                log.warning(f"optuna: trial {number} of '{study_name}' was left RUNNING by a search that stopped ({age}): marked FAIL")
        return study_id

    def abandoned_trials(self, study_id: int) -> list[tuple[int, int, float | None]]:
        """``(trial_id, number, seconds since its last beat or None)`` of each RUNNING trial
        whose beat is older than the grace period or missing, that this process does not run."""
        abandoned = []
        with _create_scoped_session(self.scoped_session) as session:
            now = session.execute(func.now()).scalar().replace(tzinfo=None)
            running = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
                .all()
            )
            for trial in running:
                if trial.trial_id in self._owned:
                    continue
                beat = models.TrialHeartbeatModel.where_trial_id(trial.trial_id, session)
                idle = None if beat is None else (now - beat.heartbeat.replace(tzinfo=None)).total_seconds()
                if idle is None or idle > self.grace_period:
                    abandoned.append((trial.trial_id, trial.number, idle))
        return abandoned

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        # Every trial object is created here (study.ask through optuna's cached storage).
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial._trial_id)
            with self._owned_lock:
                self._owned.add(trial._trial_id)
            self._start_beating()
        return trial

    def _start_beating(self) -> None:
        if self._beater is None or not self._beater.is_alive():
            self._beater = threading.Thread(target=self._beat_forever, name="optuna-heartbeat", daemon=True)
            self._beater.start()

    def _beat_forever(self) -> None:
        """Beat for this process's RUNNING trials until it exits (a daemon thread dies with it)."""
        while True:
            time.sleep(self.heartbeat_interval)
            with self._owned_lock:
                owned = sorted(self._owned)
            for trial_id in owned:
                try:
                    if self.get_trial(trial_id).state.is_finished():
                        with self._owned_lock:
                            self._owned.discard(trial_id)
                    else:
                        self.record_heartbeat(trial_id)
                except OperationalError as err:  # SQLite busy: the next beat will do
                    log.debug(f"optuna heartbeat for trial {trial_id} skipped: {err}")

    def __repr__(self) -> str:  # Hydra's sweeper logs "Storage: <this>"
        return f"{self.url} (heartbeat every {self.heartbeat_interval} s)"

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("_owned_lock", "_beater"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._owned_lock, self._beater = threading.Lock(), None

