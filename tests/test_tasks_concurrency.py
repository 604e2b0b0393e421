"""Concurrency on the real database (SQLite files, or PostgreSQL with TEST_DATABASE_URL): one
winner per ETag, and no reader ever sees half of a bulk request."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

TASKS = "/api/v1/tasks"


def test_parallel_patches_with_the_same_if_match_have_exactly_one_winner(app: Flask) -> None:
    client = app.test_client()
    task = client.post(TASKS, json={"title": "contended"}).json
    url = f"{TASKS}/{task['id']}"
    etag = client.get(url).headers["ETag"]
    writers = 16
    barrier = threading.Barrier(writers)

    def write(index: int) -> int:
        own_client = app.test_client()
        barrier.wait()  # release every writer at once
        response = own_client.patch(
            url, json={"title": f"writer {index}"}, headers={"If-Match": etag}
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=writers) as pool:
        statuses = list(pool.map(write, range(writers)))

    assert sorted(statuses) == [200] + [412] * (writers - 1)
    winner = statuses.index(200)
    assert client.get(url).json["title"] == f"writer {winner}"


def test_readers_never_see_a_partial_bulk(app: Flask) -> None:
    batch, rounds = 25, 8
    stop = threading.Event()
    totals: list[int] = []

    def read() -> None:
        reader = app.test_client()
        while not stop.is_set():
            totals.append(reader.get(f"{TASKS}?per_page=1").json["total"])

    def write() -> None:
        writer = app.test_client()
        for round_number in range(rounds):
            operations = [
                {"op": "create", "task": {"title": f"r{round_number}-{i}"}} for i in range(batch)
            ]
            assert writer.post(f"{TASKS}/bulk", json={"operations": operations}).status_code == 200

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        write()
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=10)

    assert totals, "readers ran"
    assert all(total % batch == 0 for total in totals), sorted(set(totals))
    assert app.test_client().get(TASKS).json["total"] == batch * rounds


def test_a_failing_bulk_under_concurrency_leaves_no_trace(app: Flask) -> None:
    client = app.test_client()
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        reader = app.test_client()
        while not stop.is_set():
            seen.append(reader.get(f"{TASKS}?per_page=1").json["total"])

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(8):
            operations = [{"op": "create", "task": {"title": f"t{i}"}} for i in range(30)]
            operations.append({"op": "create", "task": {"title": ""}})  # fails: nothing applies
            assert client.post(f"{TASKS}/bulk", json={"operations": operations}).status_code == 422
    finally:
        stop.set()
        thread.join(timeout=10)
    assert set(seen) == {0}
