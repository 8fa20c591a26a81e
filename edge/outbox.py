"""The home gateway's durable outbox (SQLite).

Every observation is written here, with its per-gateway ``seq``, before anything else happens to
it, and it stays until the platform acknowledges that its record store has committed it.

Durability: WAL journal with ``synchronous=FULL`` — a transaction is on stable storage when
``append`` returns (the WAL is fsynced at each commit), so a power cut after a device was told
its reading was received cannot lose it. ``AUTOINCREMENT`` makes ``seq`` strictly increasing and
never reused, even after rows are deleted, so the platform's ``(gateway_id, epoch, seq)``
uniqueness turns every resend into a no-op; the epoch, a random id made with the database, keeps
a replaced outbox (counting from 1 again) apart from the one before.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tryggheim import codes
from tryggheim.domain import Observation, TimeSource
from tryggheim.wire import LEGACY_EPOCH, observation_from_dict, observation_to_dict

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    urgent INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_urgent ON outbox (urgent, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""

#: How long a device reading is remembered to recognise it when the device sends it again.
SEEN_RETENTION_S = 30 * 24 * 3600


def reading_key(obs: Observation) -> str | None:
    """What identifies one reading of a device: a cuff that did not get the confirmation of an
    indication sends the same reading again after a reconnect. Only readings stamped by the
    device's clock can be recognised; two equal readings stamped by the gateway are two."""
    if obs.time_source is not TimeSource.DEVICE:
        return None
    return f"{obs.device_id}|{obs.code}|{obs.time.isoformat()}|{obs.value}"


def _sequence_key(device_id: str) -> str:
    return f"racp_last_sequence_number:{device_id}"


class Outbox:
    """Synchronous by design: each call is one short local transaction (well under a
    millisecond plus the fsync), cheaper than handing it to a thread."""

    def __init__(self, path: Path, gateway_id: str, *, quota_bytes: int | None = None) -> None:
        """``quota_bytes``: above it, only telemetry that is no patient's data (room climate,
        radio link quality; :data:`tryggheim.codes.TELEMETRY`) is refused — counted and logged.
        Measurements and events are always stored: a disk that fills up is an error loud
        enough for the platform to see (the status alarm rises well before)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.quota_bytes = quota_bytes
        self.telemetry_refused = 0
        self._gateway_id = gateway_id
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.epoch = self._epoch()
        """This outbox's identity, sent with every batch: a new outbox (a new SD card) numbers
        its seqs from 1 again, and the platform must not take them for the old ones."""
        self.duplicates_dropped = 0
        """Readings a device sent again and that were therefore not stored twice."""

    def _epoch(self) -> str:
        with self._transaction():
            row = self._db.execute("SELECT value FROM identity WHERE key = 'epoch'").fetchone()
            if row is not None:
                return str(row[0])
            # An outbox that numbered seqs before epochs existed goes on as the legacy epoch:
            # the platform knows its seqs under that one.
            used = self.last_seq > 0 or self.committed_seq > 0
            epoch = LEGACY_EPOCH if used else str(uuid.uuid4())
            self._db.execute("INSERT INTO identity (key, value) VALUES ('epoch', ?)", (epoch,))
        return epoch

    def close(self) -> None:
        self._db.close()

    def append(self, observations: Sequence[Observation]) -> list[Observation]:
        """Store observations durably; returns those stored, with their assigned ``seq``.
        A reading the device already delivered (see :func:`reading_key`) is left out."""
        stored: list[Observation] = []
        now = time.time()
        full = self.fill() >= 1.0
        with self._transaction():
            for obs in observations:
                if full and obs.code in codes.TELEMETRY:
                    self.telemetry_refused += 1
                    log.warning("outbox over quota: %s of %s not stored", obs.code, obs.device_id)
                    continue
                key = reading_key(obs)
                if key is not None:
                    inserted = self._db.execute(
                        "INSERT OR IGNORE INTO seen (key, at) VALUES (?, ?)", (key, now)
                    ).rowcount
                    if not inserted:
                        self.duplicates_dropped += 1
                        continue
                cursor = self._db.execute(
                    "INSERT INTO outbox (urgent, body) VALUES (?, '')", (int(obs.is_urgent),)
                )
                assert cursor.lastrowid is not None
                numbered = replace(obs, gateway_id=self._gateway_id, seq=cursor.lastrowid)
                self._db.execute(
                    "UPDATE outbox SET body = ? WHERE seq = ?",
                    (json.dumps(observation_to_dict(numbered)), numbered.seq),
                )
                stored.append(numbered)
        return stored

    def pending(
        self, *, after_seq: int, limit: int, urgent: bool, skip: frozenset[int] = frozenset()
    ) -> list[Observation]:
        """Observations after ``after_seq`` in seq order, urgent ones or the others."""
        rows = self._db.execute(
            "SELECT seq, body FROM outbox WHERE seq > ? AND urgent = ? ORDER BY seq LIMIT ?",
            (after_seq, int(urgent), limit + len(skip)),
        ).fetchall()
        return [self._load(body) for seq, body in rows if seq not in skip][:limit]

    def _load(self, body: str) -> Observation:
        return observation_from_dict("outbox", json.loads(body), self._gateway_id)

    def commit_upto(self, seq: int) -> int:
        """The platform has committed everything up to ``seq``: forget it. Returns rows removed."""
        with self._transaction():
            removed = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('committed_seq', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (seq,),
            )
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('committed_at_ms', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (int(time.time() * 1000),),
            )
            self._db.execute("DELETE FROM seen WHERE at < ?", (time.time() - SEEN_RETENTION_S,))
        return removed

    def reject(self, first_seq: int, last_seq: int, reason: str) -> int:
        """The platform will never store these seqs: set them aside (kept, with the reason,
        for a technician; no longer sent) so the rest can flow. Returns rows set aside."""
        with self._transaction():
            moved = self._db.execute(
                "INSERT OR IGNORE INTO rejected (seq, body, reason, at) "
                "SELECT seq, body, ?, ? FROM outbox WHERE seq BETWEEN ? AND ?",
                (reason, time.time(), first_seq, last_seq),
            ).rowcount
            self._db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first_seq, last_seq))
        if moved:
            log.error(
                "platform rejected seqs %d..%d (%d kept aside): %s",
                first_seq,
                last_seq,
                moved,
                reason,
            )
        return moved

    def rejected_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM rejected").fetchone()[0])

    @property
    def committed_at(self) -> float | None:
        """When the platform last acknowledged a commit (epoch seconds), if ever."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'committed_at_ms'").fetchone()
        return int(row[0]) / 1000 if row else None

    def size_bytes(self) -> int:
        """Bytes the outbox occupies on disk: the database and its write-ahead log."""
        pages, page_size = (
            self._db.execute("PRAGMA page_count").fetchone()[0],
            self._db.execute("PRAGMA page_size").fetchone()[0],
        )
        wal = self.path.with_name(self.path.name + "-wal")
        return int(pages) * int(page_size) + (wal.stat().st_size if wal.exists() else 0)

    def fill(self) -> float:
        """Fraction of the quota in use (0 without a quota)."""
        return self.size_bytes() / self.quota_bytes if self.quota_bytes else 0.0

    def urgent_depth(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox WHERE urgent = 1").fetchone()[0])

    @property
    def committed_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'committed_seq'").fetchone()
        return int(row[0]) if row else 0

    @property
    def last_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

    def last_sequence_number(self, device_id: str) -> int | None:
        """The highest record sequence number of a stored-record device (RACP) whose records
        are in this outbox, or ``None`` if none has been downloaded yet."""
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (_sequence_key(device_id),)
        ).fetchone()
        return int(row[0]) if row else None

    def set_last_sequence_number(self, device_id: str, sequence_number: int) -> None:
        """Remember (durably) that records up to ``sequence_number`` are in the outbox: the
        next download asks for the records after it."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_sequence_key(device_id), sequence_number),
            )

    def depth(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
