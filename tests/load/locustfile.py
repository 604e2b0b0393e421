"""Locust load scenario for the Task API (v2, workspaces): a read-heavy mix of reads and writes,
as logged-in users.

Run against a running server (see docs/api-testing.md, "Load testing with Locust"):

    .venv/bin/locust -f tests/load/locustfile.py --host http://127.0.0.1:5000 \
        --headless -u 20 -r 10 -t 30s

Users work in teams of USERS_PER_WORKSPACE, one account and one workspace to a team: the first
user of a team signs up an account of its own (``load-<random>@example.com``, a random
password), logs in and creates the workspace in on_start; the others of the team wait for it
and share its access token. One sign-up and one log-in per team, never one per request: the
server allows RATE_LIMIT_AUTH_IP sign-ups and as many log-ins per client address (20 a minute
by default) and the load generator is one address; and one account's requests share
RATE_LIMIT_API (1200 a minute), which a team stays well below. The access token expires
(ACCESS_TOKEN_TTL, 15 minutes by default): once it has less than REFRESH_MARGIN_SECONDS left, the
next user of the team to send a request trades the refresh token for a new pair, for the whole
team; the others go on with the old token, still valid, meanwhile. The last user of a team to
stop deletes the workspace (with its tasks) and logs out, so a run leaves nothing behind but
its accounts (nothing deletes an account).

In its workspace a user lists the tasks (everyone's, revalidating with If-None-Match), reads the
workspace, and creates, reads (If-None-Match), patches (If-Match) and deletes tasks of its own:
it only changes ids it got back from the API, so users sharing a workspace never collide (no
412) and the scenario needs no seeded data. Accounts, workspaces and tasks are in the database,
so a server restart loses nothing; still use --no-reload, since a reloader restart fails the
requests in flight.

Not a pytest module: pytest collects only test_*.py, and importing locust monkey-patches the
standard library with gevent, which must never happen inside the test run.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from typing import Any, ClassVar

from gevent.event import Event
from gevent.lock import BoundedSemaphore
from locust import FastHttpUser, between, task

AUTH = "/api/v2/auth"
WORKSPACES = "/api/v2/workspaces"
USERS_PER_WORKSPACE = 3
# Refresh the team's tokens when the access token has less than this left (seconds).
REFRESH_MARGIN_SECONDS = 60
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


class _Team:
    """Users sharing an account and a workspace, and how many of them still use it."""

    def __init__(self) -> None:
        self.workspace_id = ""  # once the POST that creates it answered; "" if it failed
        self.created = Event()
        self.users = 0
        self.joined = 0  # users that ever joined: a team is full at USERS_PER_WORKSPACE
        # The account's tokens; the access token is good until ``expires_at`` (monotonic).
        self.access_token = ""
        self.refresh_token = ""
        self.expires_at = 0.0
        self.renewing = BoundedSemaphore(1)  # one refresh at a time for the team

    def keep(self, tokens: dict[str, Any]) -> None:
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]
        self.expires_at = time.monotonic() + float(tokens["expires_in"])


class TaskApiUser(FastHttpUser):
    """One API client in a (shared) workspace, logged in as its team's account: lists often,
    reads with ETag revalidation, creates, patches and deletes its own tasks."""

    wait_time = between(0.05, 0.5)
    # Shared by the users of this process (gevent: no two run at once between requests).
    _open: ClassVar[_Team | None] = None

    def on_start(self) -> None:
        # id -> (status, ETag) of the tasks this user created and still owns.
        self.own: dict[str, tuple[str, str]] = {}
        self.list_etag = ""
        self.team = self._join()
        if self.team is not None:
            self.create_task()

    def on_stop(self) -> None:
        team = self.team
        self.team = None
        if team is None:
            return
        team.users -= 1
        if team.users:
            return  # someone still works in it
        if team is TaskApiUser._open:
            TaskApiUser._open = None  # nobody may join it any more
        headers = self._bearer(team)
        with self.client.delete(
            f"{WORKSPACES}/{team.workspace_id}",
            headers=headers,
            name=f"{WORKSPACES}/[id]",
            catch_response=True,
        ) as r:
            self._expect(r, 204)
        with self.client.post(
            f"{AUTH}/logout", headers=headers, name=f"{AUTH}/logout", catch_response=True
        ) as r:
            self._expect(r, 204)

    def _join(self) -> _Team | None:
        """The open team, or a new one (then this user is its first, and sets it up)."""
        team = TaskApiUser._open
        creator = team is None
        if team is None:
            # Open the team before the requests: users starting meanwhile join it and wait.
            team = TaskApiUser._open = _Team()
        team.users += 1
        team.joined += 1
        if team.joined >= USERS_PER_WORKSPACE:
            TaskApiUser._open = None  # full: the next user starts a new team
        if creator:
            if self._sign_up_and_log_in(team):
                with self.client.post(
                    WORKSPACES,
                    json={"name": f"Load test {random.randint(1, 999_999)}"},
                    headers=self._bearer(team),
                    name=WORKSPACES,
                    catch_response=True,
                ) as r:
                    if self._expect(r, 201):
                        team.workspace_id = r.json()["id"]
            team.created.set()
        team.created.wait(timeout=30)
        if not team.workspace_id:
            team.users -= 1
            if team is TaskApiUser._open:
                TaskApiUser._open = None
            return None
        return team

    def _sign_up_and_log_in(self, team: _Team) -> bool:
        """A new account for the team (no shared password, nothing to configure), then its
        tokens."""
        account = {
            "email": f"load-{uuid.uuid4().hex}@example.com",
            "password": secrets.token_urlsafe(24),
        }
        with self.client.post(
            f"{AUTH}/register", json=account, name=f"{AUTH}/register", catch_response=True
        ) as r:
            if not self._expect(r, 201):
                return False
        with self.client.post(
            f"{AUTH}/login", json=account, name=f"{AUTH}/login", catch_response=True
        ) as r:
            if not self._expect(r, 200):
                return False
            tokens = r.json()
            if tokens.get("mfa_required") or "access_token" not in tokens:
                r.failure("no tokens in the log-in's answer")
                return False
            team.keep(tokens)
        return True

    def _bearer(self, team: _Team | None = None) -> dict[str, str]:
        """The Authorization header, with tokens refreshed first when they are about to expire:
        by the first user to notice; the others keep the old token meanwhile."""
        team = team or self.team
        assert team is not None
        due = time.monotonic() >= team.expires_at - REFRESH_MARGIN_SECONDS
        if due and team.renewing.acquire(blocking=False):
            try:
                self._refresh(team)
            finally:
                team.renewing.release()
        return {"Authorization": f"Bearer {team.access_token}"}

    def _refresh(self, team: _Team) -> None:
        with self.client.post(
            f"{AUTH}/refresh",
            json={"refresh_token": team.refresh_token},
            name=f"{AUTH}/refresh",
            catch_response=True,
        ) as r:
            if self._expect(r, 200):
                team.keep(r.json())

    @property
    def tasks_url(self) -> str:
        assert self.team is not None
        return f"{WORKSPACES}/{self.team.workspace_id}/tasks"

    def _expect(self, response: Any, *codes: int) -> bool:
        if response.status_code in codes:
            return True
        # Status and problem title only, so Locust teams identical failures into one row.
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
        if self.team is None:
            return
        # Revalidate the page we hold: 304 while nobody in the workspace changed anything.
        headers = self._bearer()
        if self.list_etag:
            headers["If-None-Match"] = self.list_etag
        with self.client.get(
            f"{self.tasks_url}?per_page=20",
            headers=headers,
            name=f"{WORKSPACES}/[id]/tasks",
            catch_response=True,
        ) as r:
            if self._expect(r, 200, 304) and r.status_code == 200:
                if "items" not in r.json():
                    r.failure("no items in the page")
                self.list_etag = r.headers.get("ETag", "")

    @task(3)
    def list_filtered_sorted(self) -> None:
        if self.team is None:
            return
        query = random.choice(FILTERS)
        with self.client.get(
            f"{self.tasks_url}?{query}",
            headers=self._bearer(),
            name=f"{WORKSPACES}/[id]/tasks?[filters]",
            catch_response=True,
        ) as r:
            self._expect(r, 200)

    @task(1)
    def get_workspace(self) -> None:
        if self.team is None:
            return
        with self.client.get(
            f"{WORKSPACES}/{self.team.workspace_id}",
            headers=self._bearer(),
            name=f"{WORKSPACES}/[id]",
            catch_response=True,
        ) as r:
            self._expect(r, 200)

    @task(2)
    def create_task(self) -> None:
        if self.team is None:
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
            self.tasks_url,
            json=document,
            headers=self._bearer(),
            name=f"{WORKSPACES}/[id]/tasks",
            catch_response=True,
        ) as r:
            if self._expect(r, 201):
                self._remember(r)

    @task(5)
    def get_task(self) -> None:
        task_id = self._some_own_id()
        if not task_id:
            return
        # Revalidate with the ETag we hold, like a caching client: 304 when nothing changed.
        headers = {**self._bearer(), "If-None-Match": self.own[task_id][1]}
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
            headers={**self._bearer(), "If-Match": etag},  # nobody else touches ours: no 412
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
            headers=self._bearer(),
            name=f"{WORKSPACES}/[id]/tasks/[id]",
            catch_response=True,
        ) as r:
            if self._expect(r, 204):
                self.own.pop(task_id, None)
