"""Durable outbox: every event is committed to SQLite before the door acts, and leaves only when
the broker has acknowledged it.

Durability choices (an SD card on a Pi whose power may be cut at any moment):

* WAL journal: a writer (the daemon) and a reader (the MQTT thread) do not block each other,
  and a torn write leaves the database consistent.
* ``synchronous=FULL`` for :meth:`record`: in WAL mode NORMAL only syncs at checkpoints, so a
  power cut could silently lose the last events *after* the relay has fired. FULL fsyncs the WAL
  at each commit: one fsync per decision (a few per minute) is cheap.
* Small pages (:data:`PAGE_SIZE`): an event's commit rewrites three pages (row, id index,
  counters), so the page size sets the bytes written per event (SD card wear).
* The WAL is checkpointed every :data:`WAL_CHECKPOINT_PAGES` pages and cut back to
  :data:`WAL_LIMIT_BYTES` after each checkpoint: SQLite's default lets it grow to ~4 MB and keeps
  that size for good (each event adds ~20 kB to it, a soak's outbox file grew for hours).
* ``synchronous=NORMAL`` for :meth:`mark_sent`: losing an acknowledgement in a power cut only
  re-sends an event, which consumers de-duplicate by ``event_id`` anyway; it saves an fsync per
  event while a backlog drains.

``seq`` is a counter stored in the same database and incremented in the same transaction as the
insert, so it survives restarts and never repeats (unless the file itself is deleted).
A corrupt or foreign file is refused with :class:`StateError` naming it: recreating it silently
would throw away the unsent events it may still hold. A write the disk refuses (full, I/O error)
raises :class:`StorageFullError` with nothing half-written; :meth:`Outbox.writable` tells when
writes go through again.

Event times are the wall clock's (``clock``, see :mod:`gate.clock`): each event says whether it
was synchronised, and the ``max_age_days`` bound never drops one whose time was not trusted nor
runs while the clock is not: a Pi that boots months in the past and is then set right by NTP
must not see its unsent events as months old.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gate.clock import SystemClock, WallClock
from gate.errors import StateError, StorageFullError
from gate.events import Event, EventDraft
from gate.settings import OutboxSettings

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4D474F58  # "MGOX": marks the file as a maskgate outbox
SCHEMA_VERSION = 1
PAGE_SIZE = 1024  # an event touches 3 pages per commit: 1 kB pages write ~3 kB of WAL, not ~12 kB (files made before keep 4 kB)
WAL_CHECKPOINT_PAGES = 256  # the WAL is folded into the database every 256 pages (256 kB of 1 kB pages)
WAL_LIMIT_BYTES = 256 * 1024
FREE_MARGIN_BYTES = 64 * 1024  # free space that counts as "space came back": a few events' worth
SQLITE_FULL, SQLITE_IOERR = 13, 10  # primary result codes: the disk refused the write
SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, created REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters (name, value) VALUES ('last_seq', 0), ('sent_total', 0), ('dropped', 0);
"""


def _disk_refused(exc: sqlite3.Error) -> bool:
    """SQLite's "database or disk is full" or "disk I/O error" (not a corrupt or foreign file)."""
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", 0) & 0xFF in (SQLITE_FULL, SQLITE_IOERR)


class Outbox:
    """Unsent events in seq order; safe to share between the daemon thread and the MQTT thread."""

    def __init__(self, path: Path, settings: OutboxSettings, *, clock: WallClock | None = None) -> None:
        self.path = Path(path)
        self._settings = settings
        self._clock = clock or SystemClock("always")
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the outbox ({exc})") from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if _disk_refused(exc):  # a full disk is not a broken file: freeing space fixes it
                raise StorageFullError(f"outbox {self.path}: the disk refused a write ({exc})") from exc
            raise StateError(
                f"{self.path}: not a usable outbox ({exc}). Refusing to start: recreating it would lose the "
                f"unsent events it may hold. Try `sqlite3 {self.path} .recover`, then move the file aside to start empty."
            ) from exc
        except StateError:
            self._db.close()
            raise
        dropped = self._with_bounds()
        log.info("outbox %s: %d pending, last seq %d%s", self.path, self._count(), self._counter("last_seq"),
                 f", dropped {dropped} too old" if dropped else "")

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and tables == 0:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before the first table: fixed for the file's life
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(f"BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            log.info("outbox %s created", self.path)
        elif app_id != APPLICATION_ID:
            raise StateError(f"{self.path}: an SQLite database, but not a maskgate outbox (application_id {app_id:#x}); "
                             "check outbox.path, or move the file aside")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StateError(f"{self.path}: outbox format {version}, this maskgate reads format {SCHEMA_VERSION}")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StateError(f"{self.path}: outbox failed its integrity check ({check}); try `sqlite3 {self.path} .recover`")
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise StateError(f"{self.path}: cannot switch the outbox to WAL mode (read-only file system?)")
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")

    @contextmanager
    def _transaction(self, synchronous: str = "FULL") -> Iterator[sqlite3.Connection]:
        """One transaction; a write the disk refuses is rolled back whole and raised as StorageFullError."""
        try:
            self._db.execute(f"PRAGMA synchronous = {synchronous}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back by itself (SQLITE_FULL)
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if _disk_refused(exc):
                raise StorageFullError(f"outbox {self.path}: the disk refused a write ({exc})") from exc
            raise

    def _counter(self, name: str) -> int:
        return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def _bump(self, name: str, by: int = 1) -> int:
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))
        return self._counter(name)

    def _count(self) -> int:
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def _drop_over_bounds(self) -> int:
        """Inside a transaction: delete the oldest unsent events beyond max_events / max_age_days."""
        dropped = 0
        if self._clock.synchronised():
            cutoff = self._clock.now().timestamp() - self._settings.max_age_days * 86400
            dropped = self._db.execute("DELETE FROM events WHERE created < ? AND json_extract(body, '$.clock_synced') IS NOT 0", (cutoff,)).rowcount
        excess = self._count() - self._settings.max_events
        if excess > 0:
            dropped += self._db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (excess,)).rowcount
        if dropped:
            self._bump("dropped", dropped)
        return dropped

    def _with_bounds(self) -> int:
        with self._lock, self._transaction():
            dropped = self._drop_over_bounds()
        if dropped:
            self._warn_dropped(dropped)
        return dropped

    def _warn_dropped(self, dropped: int) -> None:
        log.warning("outbox full or stale: dropped the %d oldest unsent event(s) (max_events %d, max_age_days %g); %d dropped in total",
                    dropped, self._settings.max_events, self._settings.max_age_days, self._counter("dropped"))

    # -- public ------------------------------------------------------------------------------

    def record(self, draft: EventDraft) -> Event:
        """Number and store an event; durable on disk when this returns (call it before acting)."""
        with self._lock:
            with self._transaction("FULL"):
                event = draft.numbered(self._bump("last_seq"), clock_synced=self._clock.synchronised())
                self._db.execute("INSERT INTO events (seq, event_id, created, body) VALUES (?, ?, ?, ?)",
                                 (event.seq, event.event_id, event.time.timestamp(), event.to_json()))
                dropped = self._drop_over_bounds()
            if dropped:
                self._warn_dropped(dropped)
        return event

    def pending(self, limit: int = 100) -> list[Event]:
        """The oldest unsent events, in seq order."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Event.model_validate_json(body) for (body,) in rows]

    def mark_sent(self, event_id: str) -> bool:
        """Forget an acknowledged event. False if it was not pending (already acked, or dropped)."""
        with self._lock, self._transaction("NORMAL"):
            removed = self._db.execute("DELETE FROM events WHERE event_id = ?", (event_id,)).rowcount
            if removed:
                self._bump("sent_total")
        return bool(removed)

    def writable(self) -> bool:
        """Whether a write goes through now (after a StorageFullError: has space come back?).

        The file system must have :data:`FREE_MARGIN_BYTES` free (a probe write alone could fit in
        the WAL's old frames while an event would not), and a synced commit must go through."""
        try:
            if shutil.disk_usage(self.path.parent).free < FREE_MARGIN_BYTES:
                return False
        except OSError:
            return False
        try:
            with self._lock, self._transaction("FULL"):
                self._db.execute("UPDATE counters SET value = value WHERE name = 'dropped'")
        except StorageFullError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            oldest = self._db.execute("SELECT min(created) FROM events").fetchone()[0]
            return {
                "pending": self._count(),
                "sent_total": self._counter("sent_total"),
                "dropped": self._counter("dropped"),
                "last_seq": self._counter("last_seq"),
                "oldest_pending_age_s": None if oldest is None else round(max(0.0, self._clock.now().timestamp() - oldest), 1),
            }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
