"""Locust load scenario for the Task API (v2, workspaces): a read-heavy mix of reads and writes.

Run against a running server (see docs/api-testing.md, "Load testing with Locust"):

    .venv/bin/locust -f tests/load/locustfile.py --host http://127.0.0.1:5000 \
        --headless -u 20 -r 10 -t 30s

Users work in workspaces, USERS_PER_WORKSPACE to a workspace: the first user of a group creates
one in on_start, the others share it, and the last one to stop deletes it (with its tasks), so a
run leaves nothing behind. In its workspace a user lists the tasks (everyone's, revalidating with
If-None-Match), reads the workspace, and creates, reads (If-None-Match), patches (If-Match) and
deletes tasks of its own: it only changes ids it got back from the API, so users sharing a
workspace never collide (no 412) and the scenario needs no seeded data. Workspaces and tasks are
in the database, so a server restart loses nothing; still use --no-reload, since a reloader
restart fails the requests in flight.

Not a pytest module: pytest collects only test_*.py, and importing locust monkey-patches the
standard library with gevent, which must never happen inside the test run.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from gevent.event import Event
from locust import FastHttpUser, between, task

WORKSPACES = "/api/v2/workspaces"
USERS_PER_WORKSPACE = 3
MAX_OWN_TASKS = 30  # past this, a user deletes before creating, so the workspace stays small
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


class _Workspace:
    """A workspace some users share, and how many of them still use it."""

    def __init__(self) -> None:
        self.id = ""  # set once the POST that creates it answered; "" if it failed
        self.created = Event()
        self.users = 0
        self.joined = 0  # users that ever joined: a group is full at USERS_PER_WORKSPACE


class TaskApiUser(FastHttpUser):
    """One API client in a (shared) workspace: lists often, reads with ETag revalidation,
    creates, patches and deletes its own tasks."""

    wait_time = between(0.05, 0.5)
    # Shared by the users of this process (gevent: no two run at once between requests).
    _open: ClassVar[_Workspace | None] = None

    def on_start(self) -> None:
        # id -> (status, ETag) of the tasks this user created and still owns.
        self.own: dict[str, tuple[str, str]] = {}
        self.list_etag = ""
        self.workspace = self._join()
        if self.workspace is not None:
            self.create_task()

    def on_stop(self) -> None:
        workspace = self.workspace
        self.workspace = None
        if workspace is None:
            return
        workspace.users -= 1
        if workspace.users:
            return  # someone still works in it
        if workspace is TaskApiUser._open:
            TaskApiUser._open = None  # nobody may join it any more
        with self.client.delete(
            f"{WORKSPACES}/{workspace.id}", name=f"{WORKSPACES}/[id]", catch_response=True
        ) as r:
            self._expect(r, 204)

    def _join(self) -> _Workspace | None:
        """The open workspace of the current group, or a new one (then the group's first)."""
        workspace = TaskApiUser._open
        creator = workspace is None
        if workspace is None:
            # Open the group before the POST: users starting meanwhile join it and wait.
            workspace = TaskApiUser._open = _Workspace()
        workspace.users += 1
        workspace.joined += 1
        if workspace.joined >= USERS_PER_WORKSPACE:
            TaskApiUser._open = None  # full: the next user starts a new group
        if creator:
            name = f"Load test {random.randint(1, 999_999)}"
            with self.client.post(
                WORKSPACES, json={"name": name}, name=WORKSPACES, catch_response=True
            ) as r:
                if self._expect(r, 201):
                    workspace.id = r.json()["id"]
            workspace.created.set()
        workspace.created.wait(timeout=30)
        if not workspace.id:
            workspace.users -= 1
            if workspace is TaskApiUser._open:
                TaskApiUser._open = None
            return None
        return workspace

    @property
    def tasks_url(self) -> str:
        assert self.workspace is not None
        return f"{WORKSPACES}/{self.workspace.id}/tasks"

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
        if self.workspace is None:
            return
        # Revalidate the page we hold: 304 while nobody in the workspace changed anything.
        with self.client.get(
            f"{self.tasks_url}?per_page=20",
            headers={"If-None-Match": self.list_etag} if self.list_etag else {},
            name=f"{WORKSPACES}/[id]/tasks",
            catch_response=True,
        ) as r:
            if self._expect(r, 200, 304) and r.status_code == 200:
                if "items" not in r.json():
                    r.failure("no items in the page")
                self.list_etag = r.headers.get("ETag", "")

    @task(3)
    def list_filtered_sorted(self) -> None:
        if self.workspace is None:
            return
        query = random.choice(FILTERS)
        with self.client.get(
            f"{self.tasks_url}?{query}",
            name=f"{WORKSPACES}/[id]/tasks?[filters]",
            catch_response=True,
        ) as r:
            self._expect(r, 200)

    @task(1)
    def get_workspace(self) -> None:
        if self.workspace is None:
            return
        with self.client.get(
            f"{WORKSPACES}/{self.workspace.id}", name=f"{WORKSPACES}/[id]", catch_response=True
        ) as r:
            self._expect(r, 200)

    @task(2)
    def create_task(self) -> None:
        if self.workspace is None:
            return
        if len(self.own) >= MAX_OWN_TASKS:
            self.delete_task()
        document = {
            "title": f"{random.choice(TITLES)} #{random.randint(1, 9999)}",
            "priority": random.choice(["low", "medium", "high", "urgent"]),
            "tags": ["load", random.choice(["docs", "ops", "dev"])],
            "due_date": f"2026-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}T12:00:00Z",
        }
        with self.client.post(
            self.tasks_url, json=document, name=f"{WORKSPACES}/[id]/tasks", catch_response=True
        ) as r:
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
            f"{self.tasks_url}/{task_id}",
            headers=headers,
            name=f"{WORKSPACES}/[id]/tasks/[id]",
            catch_response=True,
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
            f"{self.tasks_url}/{task_id}",
            json=changes,
            headers={"If-Match": etag},  # nobody else touches our tasks: never 412
            name=f"{WORKSPACES}/[id]/tasks/[id]",
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
            f"{self.tasks_url}/{task_id}",
            name=f"{WORKSPACES}/[id]/tasks/[id]",
            catch_response=True,
        ) as r:
            if self._expect(r, 204):
                self.own.pop(task_id, None)
