"""The embedded broker (portal/filebroker.py) on its own, with real processes and real files.

kombu's own file transport fails the first case now and then (an empty message file read before
it was written: JSONDecodeError in a consumer, a message lost); the fault suite's
tests/faults/test_embedded_broker.py runs the whole `make run` stack on it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

TRANSPORT = "portal.filebroker:Transport"
PRODUCERS = 4
CONSUMERS = 3
MESSAGES_PER_PRODUCER = 200


def _options(root: Path) -> dict[str, Any]:
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "staging_folder": str(root / "staging"),
        "claimed_folder": str(root / "claimed"),
        "unreadable_folder": str(root / "unreadable"),
        "control_folder": str(root / "control"),
        "polling_interval": 0.01,
    }


def _connection(root: Path) -> Connection:
    return Connection(transport=TRANSPORT, transport_options=_options(root))


def _jobs(connection: Connection, root: Path) -> Any:
    """The test's queue. Named after its folder: kombu keeps the bindings it declared for the
    whole process (not per folder), so a name reused by an earlier test in another folder would
    not be bound in this one."""
    return connection.SimpleQueue(root.name)


def _produce(root: Path, producer: int, start: Any) -> None:
    start.wait()
    with _connection(root) as connection:
        queue = _jobs(connection, root)
        for number in range(MESSAGES_PER_PRODUCER):
            queue.put({"producer": producer, "number": number, "padding": "x" * 2000})


def _consume(root: Path, received: Any, producers_done: Any, start: Any) -> None:
    start.wait()
    with _connection(root) as connection:
        queue = _jobs(connection, root)
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                if producers_done.is_set():
                    return
                continue
            body = message.payload
            assert body["padding"] == "x" * 2000
            received.put((body["producer"], body["number"]))
            message.ack()


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_concurrent_producers_and_consumers_deliver_every_message_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start, producers_done = context.Event(), context.Event()
    received = context.Queue()
    producers = [
        context.Process(target=_produce, args=(tmp_path, n, start)) for n in range(PRODUCERS)
    ]
    consumers = [
        context.Process(target=_consume, args=(tmp_path, received, producers_done, start))
        for _ in range(CONSUMERS)
    ]
    for process in producers + consumers:
        process.start()
    start.set()
    for process in producers:
        process.join(60)
        assert process.exitcode == 0
    producers_done.set()
    deliveries = []
    while any(process.is_alive() for process in consumers) or not received.empty():
        try:
            deliveries.append(received.get(timeout=0.5))
        except Empty:
            continue
    for process in consumers:
        process.join(10)
        assert process.exitcode == 0, "a consumer failed (an unreadable or lost message?)"

    expected = [(p, n) for p in range(PRODUCERS) for n in range(MESSAGES_PER_PRODUCER)]
    assert len(deliveries) == len(expected), "messages lost or delivered twice"
    assert sorted(deliveries) == expected
    assert _files(tmp_path / "queue") == []
    assert _files(tmp_path / "staging") == []
    assert _files(tmp_path / "claimed") == []  # every claim acknowledged
    assert _files(tmp_path / "unreadable") == []


def test_unreadable_message_files_are_logged_set_aside_and_the_next_message_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _connection(tmp_path) as connection:
        queue = _jobs(connection, tmp_path)
        queue.put({"good": 1})
        # Older than the good message, so they are taken first.
        bad = {
            f"00000000000000000001_empty.{tmp_path.name}.msg": b"",
            f"00000000000000000002_garbage.{tmp_path.name}.msg": b"\x00\xffnot json{",
            f"00000000000000000003_notamessage.{tmp_path.name}.msg": b'{"body": "no properties"}',
        }
        for name, content in bad.items():
            (tmp_path / "queue" / name).write_bytes(content)
        with caplog.at_level(logging.ERROR, logger="portal.filebroker"):
            message = queue.get(timeout=2)
        assert message.payload == {"good": 1}
        message.ack()
        logged = "\n".join(record.getMessage() for record in caplog.records)
        for name in bad:
            assert f"Unreadable message file {name}" in logged
        assert _files(tmp_path / "unreadable") == sorted(bad)
        assert (tmp_path / "unreadable" / next(iter(bad))).read_bytes() == b""
        assert _files(tmp_path / "queue") == []
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.3)


def _take_and_die(root: Path) -> None:
    with _connection(root) as connection:
        message = _jobs(connection, root).get(timeout=5)
        assert message.payload == {"task": "interrupted"}
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-task: no ack, no warm shutdown


def test_claims_of_a_killed_consumer_are_queued_again(tmp_path: Path) -> None:
    with _connection(tmp_path) as connection:
        _jobs(connection, tmp_path).put({"task": "interrupted"})
    process = multiprocessing.get_context("fork").Process(target=_take_and_die, args=(tmp_path,))
    process.start()
    process.join(30)
    assert process.exitcode == -signal.SIGKILL
    assert _files(tmp_path / "queue") == []
    claimant = f"{process.pid}@{socket.gethostname()}"
    assert [path.split("/")[0] for path in _files(tmp_path / "claimed")] == [claimant]

    with _connection(tmp_path) as connection:  # a new worker's channel
        message = _jobs(connection, tmp_path).get(timeout=2)
        assert message.payload == {"task": "interrupted"}
        message.ack()
    assert _files(tmp_path / "claimed") == []
    assert not (tmp_path / "claimed" / claimant).exists()


def test_rejected_and_unacknowledged_messages_go_back_to_the_queue(tmp_path: Path) -> None:
    with _connection(tmp_path) as connection:
        queue = _jobs(connection, tmp_path)
        queue.put({"n": 1})
        queue.put({"n": 2})
        first = queue.get(timeout=2)
        assert first.payload == {"n": 1}
        first.requeue()
        again = queue.get(timeout=2)
        assert again.payload == {"n": 1}  # first in line again
        held = queue.get(timeout=2)
        assert held.payload == {"n": 2}
        again.ack()
        assert len(_files(tmp_path / "claimed")) == 1
    # Closed without acknowledging {"n": 2} (a warm shutdown): it is queued again, not lost.
    assert _files(tmp_path / "claimed") == []
    with _connection(tmp_path) as connection:
        queue = _jobs(connection, tmp_path)
        message = queue.get(timeout=2)
        assert message.payload == {"n": 2}
        message.ack()
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.3)
