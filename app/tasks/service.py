"""Task use cases, free of HTTP: create, read, list, replace, patch, delete, bulk.

Every write runs inside ``repository.atomic()``, so a precondition check and the write it guards
are one step: two clients holding the same ETag cannot both win.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from app.auth.permissions import Action
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.core.merge_patch import merge_patch
from app.tasks.models import Status, Task, can_transition, new_task_id, utc_now
from app.tasks.repository import Page, TaskQuery, TaskRepository, TaskStamp
from app.tasks.schemas import check_patch, task_document, task_fields

# Called with the current task: None lets the write go ahead, a string says why not (412).
Precondition = Callable[[Task], str | None]


class TaskNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="task-not-found",
        title="Task not found",
        status=404,
        description="No task has this id; it may have been deleted.",
    )

    def __init__(self) -> None:
        super().__init__("There is no task with this id.")


class PreconditionFailed(ApiProblem):
    problem_type = ProblemType(
        slug="precondition-failed",
        title="Precondition failed",
        status=412,
        description="A precondition of the write failed; nothing was written. Usually the "
        "If-Match ETag no longer matches: the resource changed since you read it, so GET it "
        "again, reapply your change to the new version, and retry. `detail` says which one.",
    )


class InvalidStatusTransition(ApiProblem):
    problem_type = ProblemType(
        slug="invalid-status-transition",
        title="Invalid status transition",
        status=409,
        description="The task's lifecycle does not allow this status change (for example "
        "done -> in_progress; reopen to todo first). `allowed` lists the possible next statuses.",
    )


class BulkOperationFailed(ApiProblem):
    problem_type = ProblemType(
        slug="bulk-operation-failed",
        title="Bulk operation failed",
        status=422,
        description="At least one operation failed, so none was applied. `errors` has one "
        "entry per failed operation: its `index` and the problem it would have returned alone, "
        "whose own `errors` list is cut to the first 5 (`errors_truncated` says so).",
    )
    # Per failed operation; with up to 100 operations the whole body stays small.
    NESTED_ERRORS_LISTED = 5


@dataclass(frozen=True)
class BulkOperation:
    op: Literal["create", "update", "delete"]
    task_id: uuid.UUID | None = None
    document: Mapping[str, Any] | None = None  # create: the task; update: a merge patch
    precondition: Precondition | None = None


@dataclass(frozen=True)
class BulkResult:
    index: int
    op: str
    status: int
    task_id: uuid.UUID
    task: Task | None


class TaskService:
    def __init__(
        self,
        repository: TaskRepository,
        *,
        clock: Callable[[], Any] = utc_now,
        new_id: Callable[[], uuid.UUID] = new_task_id,
        write_guard: Callable[[], None] | None = None,
        authorize: Callable[[Action], None] | None = None,
    ) -> None:
        self.repository = repository
        # Raises if the caller may not do the action here (403); None: no caller to check (the
        # CLI, seeding, tests of the use cases themselves).
        self._authorize = authorize
        self._clock = clock
        self._new_id = new_id
        # Runs first inside every outermost unit of work: may refuse the write (a workspace that
        # is moving to another shard answers 503; see app/workspaces/moves.py).
        self._write_guard = write_guard
        self._units = 0

    # --- reads ---------------------------------------------------------------------------------

    def get(self, task_id: uuid.UUID) -> Task:
        self._check(Action.TASKS_READ)
        task = self.repository.get(task_id)
        if task is None:
            raise TaskNotFound()
        return task

    def stamp(self, task_id: uuid.UUID) -> TaskStamp:
        """What the task's ETag derives from, without reading the task: a cheap 304."""
        self._check(Action.TASKS_READ)
        stamp = self.repository.stamp(task_id)
        if stamp is None:
            raise TaskNotFound()
        return stamp

    def list(self, query: TaskQuery) -> Page:
        self._check(Action.TASKS_READ)
        page = self.repository.find(query)
        if query.page > page.pages:
            raise ValidationProblem(
                [{"parameter": "page", "detail": f"must be at most {page.pages} (the last page)"}],
                status=400,
            )
        return page

    # --- writes --------------------------------------------------------------------------------

    def create(self, document: Any) -> Task:
        self._check(Action.TASKS_WRITE)
        return self._insert(task_fields(document))

    def replace(
        self, task_id: uuid.UUID, document: Any, *, precondition: Precondition | None = None
    ) -> Task:
        """PUT: the document replaces every writable field; omitted ones take their defaults."""
        self._check(Action.TASKS_WRITE)
        values = task_fields(document)
        with self._unit():
            current = self._current(task_id, precondition)
            return self._save(current, values)

    def patch(
        self,
        task_id: uuid.UUID,
        changes: Any,
        *,
        precondition: Precondition | None = None,
        pointer: str = "#",
    ) -> Task:
        """PATCH with JSON Merge Patch (RFC 7396): null removes (clears) a field."""
        self._check(Action.TASKS_WRITE)
        check_patch(changes, pointer)  # before taking the store: a bad patch waits for nothing
        with self._unit():
            current = self._current(task_id, precondition)
            values = task_fields(merge_patch(task_document(current), changes), pointer)
            return self._save(current, values)

    def delete(self, task_id: uuid.UUID, *, precondition: Precondition | None = None) -> None:
        self._check(Action.TASKS_WRITE)
        with self._unit():
            self._current(task_id, precondition)
            self.repository.delete(task_id)

    def bulk(self, operations: Sequence[BulkOperation]) -> list[BulkResult]:
        """Apply every operation in order, or none: the first failure does not stop the others
        from being checked, so the error lists every failing operation.

        Documents are validated first, outside the unit of work, so a large invalid request
        never holds the store; only lookups, preconditions and writes happen inside it.
        """
        self._check(Action.TASKS_WRITE)
        errors: list[dict[str, Any]] = []
        created: dict[int, dict[str, Any]] = {}
        for index, operation in enumerate(operations):
            try:
                if operation.op == "create":
                    created[index] = task_fields(operation.document, f"#/operations/{index}/task")
                elif operation.op == "update":
                    check_patch(operation.document, f"#/operations/{index}/changes")
            except ValidationProblem as problem:
                errors.append(_bulk_error(index, problem))
        failed = {error["index"] for error in errors}

        results: list[BulkResult] = []
        with self._unit():
            for index, operation in enumerate(operations):
                if index in failed:
                    continue
                try:
                    results.append(self._apply(index, operation, created.get(index)))
                except ApiProblem as problem:
                    errors.append(_bulk_error(index, problem))
            if errors:
                errors.sort(key=lambda error: error["index"])
                count = len(errors)
                # Raising inside atomic() rolls back the operations that did succeed.
                raise BulkOperationFailed(
                    f"{count} of {len(operations)} operation{'s' if len(operations) != 1 else ''} "
                    "failed; nothing was applied.",
                    errors=errors,
                )
        return results

    # --- helpers -------------------------------------------------------------------------------

    def _check(self, action: Action) -> None:
        if self._authorize is not None:
            self._authorize(action)

    @contextmanager
    def _unit(self) -> Iterator[None]:
        with self.repository.atomic():
            if self._units == 0 and self._write_guard is not None:
                self._write_guard()
            self._units += 1
            try:
                yield
            finally:
                self._units -= 1

    def _current(self, task_id: uuid.UUID, precondition: Precondition | None) -> Task:
        current = self.get(task_id)
        failure = None if precondition is None else precondition(current)
        if failure is not None:
            raise PreconditionFailed(failure)
        return current

    def _save(self, current: Task, values: dict[str, Any]) -> Task:
        new_status: Status = values["status"]
        if not can_transition(current.status, new_status):
            allowed = sorted(s.value for s in _next_statuses(current.status))
            raise InvalidStatusTransition(
                f"A {current.status.value} task cannot become {new_status.value}.",
                allowed=allowed,
            )
        updated = replace(current, **values)
        if updated == current:
            return current  # nothing changed: keep updated_at (and the ETag) as they are
        # The new version is the one the repository stores: the returned task's ETag is current.
        updated = replace(updated, updated_at=self._clock(), version=current.version + 1)
        self.repository.replace(updated)
        return updated

    def _insert(self, values: dict[str, Any]) -> Task:
        now = self._clock()
        task = Task(id=self._new_id(), created_at=now, updated_at=now, **values)
        with self._unit():
            self.repository.add(task)
        return task

    def _apply(
        self, index: int, operation: BulkOperation, values: dict[str, Any] | None
    ) -> BulkResult:
        prefix = f"#/operations/{index}"
        if operation.op == "create":
            assert values is not None
            task = self._insert(values)
            return BulkResult(index, "create", 201, task.id, task)
        assert operation.task_id is not None
        if operation.op == "update":
            task = self.patch(
                operation.task_id,
                operation.document,
                precondition=operation.precondition,
                pointer=f"{prefix}/changes",
            )
            return BulkResult(index, "update", 200, task.id, task)
        self.delete(operation.task_id, precondition=operation.precondition)
        return BulkResult(index, "delete", 204, operation.task_id, None)


def _next_statuses(status: Status) -> set[Status]:
    return {s for s in Status if s != status and can_transition(status, s)}


def _bulk_error(index: int, problem: ApiProblem) -> dict[str, Any]:
    problem_type = problem.problem_type
    assert problem_type is not None
    extensions = dict(problem.extensions)
    nested = extensions.get("errors")
    if isinstance(nested, list) and len(nested) > BulkOperationFailed.NESTED_ERRORS_LISTED:
        extensions["errors"] = nested[: BulkOperationFailed.NESTED_ERRORS_LISTED]
        extensions["errors_truncated"] = True
    return {
        "index": index,
        "status": problem.status,
        "type": problem_type.uri,
        "title": problem_type.title,
        "detail": problem.detail,
        **extensions,
    }
