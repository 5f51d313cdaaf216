"""The background sender: ships spooled events to ``POST /v1/events`` in batches.

Events leave the spool only after a 2xx. Network errors, 5xx, 429 and 503 are retried with
exponential backoff and full jitter, honouring ``Retry-After``. An event the service will
never take (422 names it) goes to ``dead/<source>.jsonl`` in the spool, loudly, so one bad
event cannot block the rest. Segments of processes that died are adopted and shipped.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from trailseal.client.spool import (
    Record,
    Slot,
    SpoolWriter,
    claim_slot,
    pending,
    read_records,
    write_ack,
)

log = logging.getLogger("trailseal.client")

MAX_BATCH_BYTES = 4 << 20
BACKOFF_BASE = 0.1
BACKOFF_CAP = 30.0


@dataclass
class Stats:
    """Counters of what the client did; read them, or export them as metrics."""

    recorded: int = 0
    spooled: int = 0
    spool_errors: int = 0
    invalid: int = 0
    in_memory: int = 0
    dropped: int = 0
    sent: int = 0
    duplicates: int = 0
    dead: int = 0
    retries: int = 0
    last_error: str = field(default="")

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class Sender(threading.Thread):
    """Ships what ``writer`` spools (and any orphaned slot), plus in-memory fallbacks."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        spool: Path,
        writer: SpoolWriter | None,
        memory: deque[bytes],
        stats: Stats,
        max_batch: int,
        max_delay: float,
        timeout: float,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(name="trailseal-sender", daemon=True)
        self.endpoint = url.rstrip("/") + "/v1/events"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.spool = spool
        self.writer = writer
        self.memory = memory
        self.stats = stats
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.http = http or httpx.Client(timeout=timeout)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.progress = threading.Condition()
        self._attempt = 0
        self._last_adopt = 0.0

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self.ship_once()
                    self._attempt = 0
                    self.wake.wait(self.max_delay)
                    self.wake.clear()
                except _Retry as retry:
                    self.stats.retries += 1
                    self.stats.last_error = str(retry)
                    self._attempt += 1
                    delay = retry.after
                    if delay is None:
                        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**self._attempt)
                        delay = random.uniform(0, ceiling)  # noqa: S311 (jitter, not secrets)
                    log.warning("trailseal: delivery failed (%s); retrying in %.2fs", retry, delay)
                    self._back_off(min(delay, BACKOFF_CAP * 2))
                except Exception:  # the sender must outlive any surprise
                    log.exception("trailseal: sender error")
                    self.stopping.wait(1.0)
        finally:  # here, not in stop(): a pass still under way must not lose its client
            self.http.close()

    def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` before the next attempt, fsyncing the spool every
        ``max_delay`` meanwhile: what is recorded during an outage reaches the disk as
        soon as when delivery works."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stopping.wait(min(self.max_delay, left)):
                return
            if self.writer is not None:
                self.writer.sync()

    def ship_once(self) -> None:
        """Ship everything pending now: own spool, in-memory fallbacks, orphaned slots."""
        if self.writer is not None:
            with self.writer.lock:
                active, written = self.writer.path, self.writer.size
            try:
                self._ship_slot(self.writer.slot, active, written)
            finally:  # an outage too: what waits for delivery is on disk
                self.writer.sync()
        self._ship_memory()
        if time.monotonic() - self._last_adopt > 5.0:
            self._last_adopt = time.monotonic()
            self._adopt_orphans()
        with self.progress:
            self.progress.notify_all()

    # -- shipping ----------------------------------------------------------------------

    def _ship_slot(self, slot: Slot, active: Path | None, written: int = 0) -> None:
        for segment, records, start in list(pending(slot.folder, active, written)):
            offset = start
            valid_end = records[-1].end if records else start
            while records:
                batch = self._take(records)
                self._deliver([r.payload for r in batch], slot.source)
                offset = batch[-1].end
                write_ack(segment, offset)
                records = records[len(batch):]
                with self.progress:
                    self.progress.notify_all()
            # Not being written any more, and every valid record delivered (a dead
            # writer's segment may end in zeros or a torn record, never shipped).
            if segment != active and offset >= valid_end:
                self._retire(slot, segment)

    def _take(self, records: list[Record]) -> list[Record]:
        batch: list[Record] = []
        size = 0
        for record in records[: self.max_batch]:
            if batch and size + len(record.payload) > MAX_BATCH_BYTES:
                break
            batch.append(record)
            size += len(record.payload)
        return batch

    def _retire(self, slot: Slot, segment: Path) -> None:
        """Delete a delivered segment, keeping the slot's next number first."""
        records, _ = read_records(segment)
        if records:
            last = json.loads(records[-1].payload)["context"]["source_seq"]
            slot.save(max(slot.saved_next_seq(), last + 1))
        segment.unlink(missing_ok=True)
        segment.with_suffix(".ack").unlink(missing_ok=True)

    def _ship_memory(self) -> None:
        while self.memory:
            batch = [self.memory[i] for i in range(min(self.max_batch, len(self.memory)))]
            self._deliver(batch, "memory")
            for _ in batch:
                self.memory.popleft()

    def _adopt_orphans(self) -> None:
        own = {self.writer.slot.index} if self.writer is not None else set()
        while (slot := claim_slot(self.spool, adopt=True, skip=own)) is not None:
            own.add(slot.index)
            try:
                self._ship_slot(slot, active=None)
            finally:
                slot.release()

    def _deliver(self, payloads: list[bytes], source: str) -> None:
        """POST one batch; returns when the service took it (or dead-lettered parts)."""
        body = b'{"events":[' + b",".join(payloads) + b"]}"
        try:
            response = self.http.post(self.endpoint, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            answer = response.json()
            self.stats.sent += len(answer.get("accepted", ()))
            self.stats.duplicates += len(answer.get("duplicates", ()))
            return
        if status in (429, 503):
            raise _Retry(f"service busy ({status})", _retry_after(response))
        if status == 422:
            self._dead_letter(payloads, response, source)
            return
        if status in (400, 413) and len(payloads) > 1:
            half = len(payloads) // 2
            self._deliver(payloads[:half], source)
            self._deliver(payloads[half:], source)
            return
        if status in (400, 413):
            self._dead_letter(payloads, response, source)
            return
        if status in (401, 403):
            log.error("trailseal: the service refuses the API key (%s); events stay spooled",
                      status)
        raise _Retry(f"HTTP {status}")

    def _dead_letter(self, payloads: list[bytes], response: httpx.Response, source: str) -> None:
        try:
            problem = response.json()
            bad = {int(e["index"]) for e in problem.get("errors", []) if e.get("index") is not None}
        except (ValueError, TypeError, KeyError):
            problem, bad = {"status": response.status_code}, set()
        if not bad:
            bad = set(range(len(payloads)))
        dead = self.spool / "dead"
        dead.mkdir(parents=True, exist_ok=True)
        with open(dead / f"{source}.jsonl", "ab") as handle:
            for index in sorted(bad):
                handle.write(payloads[index] + b"\n")
        self.stats.dead += len(bad)
        log.error("trailseal: the service refused %d event(s) for good; kept in %s: %s",
                  len(bad), dead, problem)
        rest = [p for i, p in enumerate(payloads) if i not in bad]
        if rest:
            self._deliver(rest, source)

    # -- flush -------------------------------------------------------------------------

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` holds, waking the sender; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.progress:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.is_alive():
                    return done()
                self.wake.set()
                self.progress.wait(min(remaining, 0.05))
        return True

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout)
        if not self.is_alive():  # else it closes its client itself once its pass ends
            self.http.close()
