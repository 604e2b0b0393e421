"""Locust load scenario for the Task API: a realistic mix of reads and writes.

Run against a running server (see docs/api-testing.md, "Load testing with Locust"):

    .venv/bin/locust -f tests/load/locustfile.py --host http://127.0.0.1:5000 \
        --headless -u 20 -r 10 -t 30s

Each simulated user creates its own tasks and only reads, changes and deletes ids it got back
from the API, so users never collide and the scenario works on an empty store as well as on
seeded data; listing is the only request that does not depend on an earlier response. The store
is in memory per process, so point it at one process (./scripts/run, or gunicorn -w 1 with
--threads): with several workers a task created on one is unknown to the others (404).

Not a pytest module: pytest collects only test_*.py, and importing locust monkey-patches the
standard library with gevent, which must never happen inside the test run.
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, between, task

TASKS = "/api/v1/tasks"
MAX_OWN_TASKS = 30  # past this, a user deletes before creating, so the store stays small
# A lifecycle walk every step of which is allowed: todo -> in_progress -> done -> todo.
NEXT_STATUS = {"todo": "in_progress", "in_progress": "done", "done": "todo"}
FILTERS = [
    "status=todo,in_progress&sort=-priority,due_date",
    "priority=high&priority=urgent&per_page=10",
    "tag=load&sort=title",
    "q=report&sort=-updated_at",
    "due_after=2026-01-01T00:00:00Z&due_before=2027-01-01T00:00:00Z&sort=due_date",
]
TITLES = ["Write report", "Review pull request", "Plan sprint", "Fix flaky test", "Call Ada"]


class TaskApiUser(FastHttpUser):
    """One API client: lists often, creates, reads (with ETag revalidation), patches, deletes."""

    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        # id -> (status, ETag) of the tasks this user created and still owns.
        self.own: dict[str, tuple[str, str]] = {}
        self.create_task()

    def _expect(self, response: Any, *codes: int) -> bool:
        if response.status_code in codes:
            return True
        # Status and problem title only, so Locust groups identical failures into one row.
        try:
            title = response.json().get("title", "")
        except (ValueError, TypeError, AttributeError):  # not JSON, or no body at all
            title = ""
        expected = " or ".join(str(code) for code in codes)
        got = f"{response.status_code} ({title})" if title else str(response.status_code)
        response.failure(f"got {got} instead of {expected}")
        return False

    def _remember(self, response: Any) -> None:
        body = response.json()
        self.own[body["id"]] = (body["status"], response.headers.get("ETag", ""))

    def _some_own_id(self) -> str:
        if not self.own:
            self.create_task()
        return random.choice(list(self.own)) if self.own else ""

    @task(6)
    def list_tasks(self) -> None:
        with self.client.get(f"{TASKS}?per_page=20", name=TASKS, catch_response=True) as r:
            if self._expect(r, 200) and "items" not in r.json():
                r.failure("no items in the page")

    @task(3)
    def list_filtered_sorted(self) -> None:
        query = random.choice(FILTERS)
        with self.client.get(
            f"{TASKS}?{query}", name=f"{TASKS}?[filters]", catch_response=True
        ) as r:
            self._expect(r, 200)

    @task(2)
    def create_task(self) -> None:
        if len(self.own) >= MAX_OWN_TASKS:
            self.delete_task()
        document = {
            "title": f"{random.choice(TITLES)} #{random.randint(1, 9999)}",
            "priority": random.choice(["low", "medium", "high", "urgent"]),
            "tags": ["load", random.choice(["docs", "ops", "dev"])],
            "due_date": f"2026-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}T12:00:00Z",
        }
        with self.client.post(TASKS, json=document, name=TASKS, catch_response=True) as r:
            if self._expect(r, 201):
                self._remember(r)

    @task(5)
    def get_task(self) -> None:
        task_id = self._some_own_id()
        if not task_id:
            return
        # Revalidate with the ETag we hold, like a caching client: 304 when nothing changed.
        headers = {"If-None-Match": self.own[task_id][1]}
        with self.client.get(
            f"{TASKS}/{task_id}", headers=headers, name=f"{TASKS}/[id]", catch_response=True
        ) as r:
            if self._expect(r, 200, 304) and r.status_code == 200:
                self._remember(r)

    @task(2)
    def patch_task(self) -> None:
        task_id = self._some_own_id()
        if not task_id:
            return
        status, etag = self.own[task_id]
        changes = {"status": NEXT_STATUS.get(status, "todo"), "priority": "high"}
        with self.client.request(
            "PATCH",
            f"{TASKS}/{task_id}",
            json=changes,
            headers={"If-Match": etag},  # nobody else touches our tasks: never 412
            name=f"{TASKS}/[id]",
            catch_response=True,
        ) as r:
            if self._expect(r, 200):
                self._remember(r)

    @task(1)
    def delete_task(self) -> None:
        task_id = self._some_own_id()
        if not task_id:
            return
        with self.client.delete(
            f"{TASKS}/{task_id}", name=f"{TASKS}/[id]", catch_response=True
        ) as r:
            if self._expect(r, 204):
                self.own.pop(task_id, None)
