"""The embedded broker of `make run` (`filesystem://`): kombu's file transport, made safe for
concurrent use. Selected in settings (CELERY_BROKER_TRANSPORT) whenever the broker is a folder.

Written against kombu 5.7.0 (pinned in requirements/dev.txt and prod.txt); re-read
kombu/transport/filesystem.py before upgrading kombu. That transport loses and corrupts messages
as soon as processes publish and consume at the same time:

- its `_put` creates the message file in the queue folder, then locks and writes it, and `_get`
  takes files without the lock: a consumer can take a file before its content is written. It
  reads an empty payload, the JSONDecodeError escapes the worker's consumer loop, the worker
  exits (and `make run`'s honcho stops the web server with it), and the message is lost;
- the exchange tables in the control folder are written the same way (opened with truncation
  before the lock), so a publisher can read an empty table while a queue is being bound;
- a message is deleted as soon as it is read, so a worker killed before its task ran loses it.

This transport keeps kombu's folders and file names (a queue left by the old one is still read)
and changes how files move between them, using only renames, which are atomic within one file
system (every folder lives under PORTAL_VAR_DIR/celery/):

1. Publish: the message is written under a unique name in `staging_folder`, then renamed into the
   queue folder. The queue only ever holds complete messages.
2. Consume: a consumer claims a file by renaming it into its own claim folder
   (`claimed_folder/<pid>@<host name>/`). Exactly one rename of a file succeeds; the losers move on.
3. A claimed file that cannot be decoded (empty, truncated, not JSON, not a message) is logged
   with its name and moved to `unreadable_folder`; the consumer goes on with the next message.
4. Acknowledging a message (after its task ran: CELERY_TASK_ACKS_LATE) deletes its claim; a
   rejected or, at a warm shutdown, unacknowledged message is renamed back into the queue. When a
   channel opens, the claims of processes of this host (or container) that no longer run (a
   worker killed mid-task) are renamed back into the queue, so their tasks run again: at least
   once, as with Redis.
5. Exchange tables are replaced by a rename too, under an exclusive lock on `control_folder/.lock`.

Limits: one host (claims are keyed by process id and host name; claims of another host name are
never taken back, and a claim whose process id has been reused by an unrelated process waits
until that process ends); no message expiry or priorities beyond what Celery does itself.
Production uses Redis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from json import JSONDecodeError
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

# Claims taken by this process: delivery tag -> claimed file. Module-wide because a message may be
# acknowledged through another channel object than the one that read it.
_claims: dict[str, Path] = {}


def _claimant() -> str:
    """This process's claim folder name: its id, and the host name (a container's own, whose
    process ids mean nothing to another container sharing the folder)."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._no_ack_queues: set[str] = set()
        for folder in (
            self.data_folder_in,
            self.data_folder_out,
            self.staging_folder,
            self.claimed_folder,
            self.unreadable_folder,
            self.control_folder,
        ):
            Path(folder).mkdir(parents=True, exist_ok=True)
        self._claims_of_dead_processes_restore()

    # --- Folders (kombu's options, plus three of ours next to the queue) -----------------------

    def _sibling_of_queue(self, name: str) -> Path:
        return Path(self.data_folder_in).parent / name

    @property
    def staging_folder(self) -> Path:
        return Path(
            self.transport_options.get("staging_folder") or self._sibling_of_queue("staging")
        )

    @property
    def claimed_folder(self) -> Path:
        return Path(
            self.transport_options.get("claimed_folder") or self._sibling_of_queue("claimed")
        )

    @property
    def unreadable_folder(self) -> Path:
        return Path(
            self.transport_options.get("unreadable_folder") or self._sibling_of_queue("unreadable")
        )

    # --- Messages -------------------------------------------------------------------------------

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write the message outside the queue, then rename it in: it appears complete or not at
        all. The name sorts by time (nanoseconds since the epoch, zero-padded) as kombu's does.
        (The ignore: kombu's two base classes name the message argument differently.)"""
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        staged = self.staging_folder / name
        try:
            staged.write_bytes(str_to_bytes(dumps(payload)))
            os.rename(staged, Path(self.data_folder_out) / name)
        except OSError as error:
            with contextlib.suppress(OSError):
                staged.unlink()
            raise ChannelError(f"Cannot add {name!r} to the queue folder") from error

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        """Claim the oldest message of `queue` by renaming it into this process's claim folder."""
        suffix = f"{queue}.msg"
        folder = Path(self.data_folder_in)
        names = [name for name in sorted(os.listdir(folder)) if name.partition(".")[2] == suffix]
        if not names:
            raise Empty()
        claims = self.claimed_folder / _claimant()
        claims.mkdir(parents=True, exist_ok=True)
        for name in names:
            claimed = claims / name
            try:
                os.rename(folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            payload = self._claimed_read(claimed)
            if payload is None:
                continue
            tag = payload["properties"]["delivery_tag"]
            if queue in self._no_ack_queues:
                claimed.unlink()  # nobody will acknowledge it (kombu's broadcast queues)
            else:
                _claims[tag] = claimed
            return payload
        raise Empty()

    def _claimed_read(self, claimed: Path) -> Any:
        """The claimed message, or None (logged, and moved to the unreadable folder)."""
        try:
            payload = loads(bytes_to_str(claimed.read_bytes()))
            if not isinstance(payload["properties"]["delivery_tag"], str):
                raise TypeError("delivery_tag is not a string")
        except (JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
            aside = self.unreadable_folder / claimed.name
            os.rename(claimed, aside)
            logger.error(
                "Unreadable message file %s (%s: %s): moved to %s; going on with the next one.",
                claimed.name,
                type(error).__name__,
                error,
                aside,
            )
            return None
        return payload

    def _claim_release(self, delivery_tag: str) -> None:
        claimed = _claims.pop(delivery_tag, None)
        if claimed is not None:
            with contextlib.suppress(FileNotFoundError):
                claimed.unlink()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self._claim_release(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._claim_release(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)  # requeue: through _restore below
        self._claim_release(delivery_tag)

    def _restore(self, message: Any) -> None:
        """Put a rejected or unacknowledged message back: its claimed file goes back into the
        queue under its own name (first in line again), or, unclaimed, it is published again."""
        claimed = _claims.pop(message.delivery_tag, None)
        if claimed is None:
            super()._restore(message)
            return
        try:
            os.rename(claimed, Path(self.data_folder_in) / claimed.name)
        except FileNotFoundError:
            super()._restore(message)

    def _claims_of_dead_processes_restore(self) -> None:
        host = socket.gethostname()
        for claims in self.claimed_folder.iterdir():
            pid, _, claims_host = claims.name.partition("@")
            if claims_host != host or not pid.isdigit() or _process_alive(int(pid)):
                continue
            for claimed in claims.iterdir():
                with contextlib.suppress(FileNotFoundError):  # another process restored it
                    os.rename(claimed, Path(self.data_folder_in) / claimed.name)
                    logger.warning(
                        "Message %s, claimed by process %s which no longer runs, is queued again.",
                        claimed.name,
                        pid,
                    )
            with contextlib.suppress(OSError):
                claims.rmdir()

    # --- Exchange tables ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _control_lock(self) -> Iterator[None]:
        with open(self.control_folder / ".lock", "ab") as lock_file:
            filesystem.lock(lock_file, filesystem.LOCK_EX)
            try:
                yield
            finally:
                filesystem.unlock(lock_file)

    def _table_write(self, exchange: str, table: list[Any]) -> None:
        file = self._exchange_file(exchange)
        staged = file.with_name(f".{file.name}.{uuid.uuid4().hex}")
        staged.write_bytes(str_to_bytes(dumps(table)))
        os.replace(staged, file)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._control_lock():
            table = self.get_table(exchange)
            if entry not in table:
                self._table_write(exchange, [entry, *table])

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        # kombu's virtual channel purges the queue; its file channel would rewrite the table.
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._control_lock():
            table = self.get_table(exchange)
            if entry in table:
                self._table_write(exchange, [other for other in table if other != entry])


class Transport(filesystem.Transport):
    Channel = Channel
