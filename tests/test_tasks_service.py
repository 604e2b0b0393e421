"""The task service and repository without HTTP: rules, lifecycle, preconditions, bulk, queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from app.core.errors import ValidationProblem
from app.tasks import DEMO_TASKS, seed_tasks
from app.tasks.models import Priority, Status, Task, can_transition, new_task_id
from app.tasks.repository import InMemoryTaskRepository, TaskQuery, sort_tasks
from app.tasks.service import (
    BulkOperation,
    BulkOperationFailed,
    InvalidStatusTransition,
    PreconditionFailed,
    TaskNotFound,
    TaskService,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DATES = "must be an ISO 8601 date-time with a time zone, in the years 1900-9999"


@pytest.fixture
def service() -> TaskService:
    ticks = count()
    return TaskService(InMemoryTaskRepository(), clock=lambda: T0 + timedelta(seconds=next(ticks)))


def errors_of(problem: pytest.ExceptionInfo[ValidationProblem]) -> list[tuple[str, str]]:
    return [(e["pointer"], e["detail"]) for e in problem.value.extensions["errors"]]


# --- ids -------------------------------------------------------------------------------------


def test_ids_are_uuid7_and_time_ordered() -> None:
    first = new_task_id(1_700_000_000_000)
    second = new_task_id(1_700_000_000_001)
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first < second
    assert first.int >> 80 == 1_700_000_000_000


def test_ids_are_unique_and_follow_creation_order_within_a_millisecond() -> None:
    ids = [new_task_id() for _ in range(5000)]  # thousands share each millisecond
    assert len(set(ids)) == 5000
    assert ids == sorted(ids)


def test_ids_from_explicit_parts_are_deterministic() -> None:
    assert new_task_id(1_700_000_000_000, b"0123456789") == new_task_id(
        1_700_000_000_000, b"0123456789"
    )


# --- create and normalisation ------------------------------------------------------------------


def test_create_normalises_and_fills_defaults(service: TaskService) -> None:
    task = service.create(
        {
            "title": "  Ship it  ",
            "tags": [" API ", "api", "Docs"],
            "due_date": "2026-12-01T12:00:00+02:00",
        }
    )
    assert task.title == "Ship it"
    assert task.tags == ("api", "docs")
    assert task.due_date == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert (task.status, task.priority, task.description) == (Status.TODO, Priority.MEDIUM, None)
    assert task.created_at == task.updated_at == T0
    assert service.get(task.id) == task


def test_create_ignores_read_only_fields(service: TaskService) -> None:
    forged = "00000000-0000-7000-8000-000000000000"
    task = service.create({"title": "x", "id": forged, "created_at": "2000-01-01T00:00:00Z"})
    assert str(task.id) != forged
    assert task.created_at == T0


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, [("#/title", "is required")]),
        ({"title": "   "}, [("#/title", "must be at least 1 character long")]),
        ({"title": "x" * 201}, [("#/title", "must be at most 200 characters long")]),
        (
            {"title": "x", "description": "d" * 5001},
            [("#/description", "must be at most 5000 characters long")],
        ),
        (
            {"title": "x", "status": "started"},
            [("#/status", "must be one of: todo, in_progress, blocked, done, cancelled")],
        ),
        (
            {"title": "x", "priority": "asap"},
            [("#/priority", "must be one of: low, medium, high, urgent")],
        ),
        ({"title": "x", "tags": ["ok", "not ok"]}, [("#/tags/1", "has an invalid format")]),
        ({"title": "x", "tags": ["t" * 31]}, [("#/tags/0", "must be at most 30 characters long")]),
        (
            {"title": "x", "tags": [str(i) for i in range(21)]},
            [("#/tags", "must have at most 20 items")],
        ),
        (
            {"title": "x", "due_date": "2026-12-01T12:00:00"},
            [
                (
                    "#/due_date",
                    "must be an ISO 8601 date-time with a time zone, in the years 1900-9999",
                )
            ],
        ),
        ({"title": "x", "due_date": "9999-12-31T23:00:00-05:00"}, [("#/due_date", DATES)]),
        ({"title": "x", "due_date": "0001-01-01T00:00:00+05:00"}, [("#/due_date", DATES)]),
        (
            {"title": "x", "due_date": "next friday"},
            [
                (
                    "#/due_date",
                    "must be an ISO 8601 date-time with a time zone, in the years 1900-9999",
                )
            ],
        ),
        ({"title": "x", "colour": "red"}, [("#/colour", "is not an allowed field")]),
        (
            {"title": 5, "tags": "a"},
            [("#/tags", "must be an array"), ("#/title", "must be a string")],
        ),
        ("not an object", [("#", "must be an object")]),
    ],
)
def test_create_rejects_invalid_documents(
    service: TaskService, document: object, expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(ValidationProblem) as caught:
        service.create(document)
    assert errors_of(caught) == expected
    assert service.repository.find(TaskQuery()).total == 0  # nothing half-written


# --- replace and patch -------------------------------------------------------------------------


def test_replace_resets_omitted_fields(service: TaskService) -> None:
    task = service.create({"title": "a", "description": "d", "tags": ["x"], "priority": "high"})
    replaced = service.replace(task.id, {"title": "b"})
    assert (replaced.title, replaced.description, replaced.tags, replaced.priority) == (
        "b",
        None,
        (),
        Priority.MEDIUM,
    )
    assert replaced.created_at == task.created_at
    assert replaced.updated_at > task.updated_at


def test_patch_is_a_merge_patch(service: TaskService) -> None:
    task = service.create(
        {"title": "a", "description": "d", "tags": ["x", "y"], "due_date": "2026-12-01T00:00:00Z"}
    )
    patched = service.patch(task.id, {"description": None, "tags": ["z"], "priority": "urgent"})
    assert patched.title == "a"
    assert patched.description is None  # null removes
    assert patched.tags == ("z",)  # arrays are replaced, not merged
    assert patched.priority == Priority.URGENT
    assert patched.due_date == task.due_date
    assert service.patch(task.id, {"due_date": None}).due_date is None


def test_patch_cannot_remove_a_required_field(service: TaskService) -> None:
    task = service.create({"title": "a"})
    with pytest.raises(ValidationProblem) as caught:
        service.patch(task.id, {"title": None})
    assert errors_of(caught) == [("#/title", "cannot be null: it is required")]
    assert service.get(task.id) == task


def test_patch_must_be_an_object(service: TaskService) -> None:
    task = service.create({"title": "a"})
    with pytest.raises(ValidationProblem):
        service.patch(task.id, ["title", "b"])


def test_a_change_that_changes_nothing_keeps_updated_at(service: TaskService) -> None:
    task = service.create({"title": "a"})
    assert service.patch(task.id, {"title": "a"}) == task


@pytest.mark.parametrize("operation", ["get", "replace", "patch", "delete"])
def test_unknown_id_is_task_not_found(service: TaskService, operation: str) -> None:
    unknown = new_task_id()
    calls = {
        "get": lambda: service.get(unknown),
        "replace": lambda: service.replace(unknown, {"title": "x"}),
        "patch": lambda: service.patch(unknown, {"title": "x"}),
        "delete": lambda: service.delete(unknown),
    }
    with pytest.raises(TaskNotFound):
        calls[operation]()


# --- lifecycle ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (Status.TODO, Status.IN_PROGRESS, True),
        (Status.IN_PROGRESS, Status.DONE, True),
        (Status.BLOCKED, Status.DONE, False),
        (Status.DONE, Status.IN_PROGRESS, False),
        (Status.DONE, Status.TODO, True),
        (Status.CANCELLED, Status.DONE, False),
        (Status.DONE, Status.DONE, True),
    ],
)
def test_lifecycle_rules(current: Status, new: Status, allowed: bool) -> None:
    assert can_transition(current, new) is allowed


def test_forbidden_transition_is_rejected_with_the_allowed_ones(service: TaskService) -> None:
    task = service.create({"title": "a", "status": "done"})
    with pytest.raises(InvalidStatusTransition) as caught:
        service.patch(task.id, {"status": "in_progress"})
    assert caught.value.extensions["allowed"] == ["todo"]
    assert service.get(task.id).status == Status.DONE


# --- preconditions -----------------------------------------------------------------------------


def test_a_failing_precondition_changes_nothing(service: TaskService) -> None:
    task = service.create({"title": "a"})
    with pytest.raises(PreconditionFailed):
        service.patch(task.id, {"title": "b"}, precondition=lambda current: "stale")
    with pytest.raises(PreconditionFailed):
        service.delete(task.id, precondition=lambda current: "stale")
    assert service.get(task.id) == task


def test_the_precondition_sees_the_current_task(service: TaskService) -> None:
    task = service.create({"title": "a"})
    seen: list[Task] = []
    service.replace(task.id, {"title": "b"}, precondition=lambda current: seen.append(current))
    assert seen == [task]


# --- bulk --------------------------------------------------------------------------------------


def test_bulk_applies_every_operation_in_order(service: TaskService) -> None:
    keep = service.create({"title": "keep"})
    drop = service.create({"title": "drop"})
    results = service.bulk(
        [
            BulkOperation("create", document={"title": "new"}),
            BulkOperation("update", task_id=keep.id, document={"priority": "high"}),
            BulkOperation("delete", task_id=drop.id),
        ]
    )
    assert [(r.index, r.op, r.status) for r in results] == [
        (0, "create", 201),
        (1, "update", 200),
        (2, "delete", 204),
    ]
    assert service.get(keep.id).priority == Priority.HIGH
    with pytest.raises(TaskNotFound):
        service.get(drop.id)
    assert service.repository.find(TaskQuery()).total == 2


def test_one_bad_operation_means_nothing_is_applied(service: TaskService) -> None:
    keep = service.create({"title": "keep"})
    before = service.repository.find(TaskQuery(per_page=100)).items
    with pytest.raises(BulkOperationFailed) as caught:
        service.bulk(
            [
                BulkOperation("create", document={"title": "new"}),
                BulkOperation("update", task_id=keep.id, document={"title": "changed"}),
                BulkOperation("delete", task_id=keep.id),
                BulkOperation("update", task_id=keep.id, document={"title": "x"}),  # deleted above
                BulkOperation("create", document={"title": ""}),
            ]
        )
    errors = caught.value.extensions["errors"]
    assert [(e["index"], e["status"]) for e in errors] == [(3, 404), (4, 422)]
    assert errors[1]["errors"] == [
        {"pointer": "#/operations/4/task/title", "detail": "must be at least 1 character long"}
    ]
    assert service.repository.find(TaskQuery(per_page=100)).items == before


def test_bulk_reports_a_stale_precondition(service: TaskService) -> None:
    task = service.create({"title": "a"})
    with pytest.raises(BulkOperationFailed) as caught:
        service.bulk(
            [BulkOperation("delete", task_id=task.id, precondition=lambda current: "stale")]
        )
    assert caught.value.extensions["errors"][0]["status"] == 412
    assert service.get(task.id) == task


# --- queries -----------------------------------------------------------------------------------


@pytest.fixture
def populated(service: TaskService) -> TaskService:
    rows = [
        {
            "title": "Alpha report",
            "status": "todo",
            "priority": "low",
            "tags": ["work"],
            "due_date": "2026-12-03T00:00:00Z",
        },
        {
            "title": "beta review",
            "status": "in_progress",
            "priority": "urgent",
            "tags": ["work", "urgent"],
            "due_date": "2026-12-01T00:00:00Z",
        },
        {
            "title": "Gamma",
            "status": "done",
            "priority": "high",
            "description": "write the REPORT",
            "tags": ["home"],
        },
        {
            "title": "delta",
            "status": "blocked",
            "priority": "medium",
            "due_date": "2026-12-02T00:00:00Z",
        },
        {"title": "Epsilon", "status": "todo", "priority": "urgent", "tags": ["home", "work"]},
    ]
    for row in rows:
        service.create(row)
    return service


def titles(service: TaskService, **query: object) -> list[str]:
    return [t.title for t in service.list(TaskQuery(**query)).items]  # type: ignore[arg-type]


def test_default_order_is_newest_first(populated: TaskService) -> None:
    assert titles(populated) == ["Epsilon", "delta", "Gamma", "beta review", "Alpha report"]


def test_filters_compose(populated: TaskService) -> None:
    assert titles(populated, statuses=frozenset({Status.TODO, Status.IN_PROGRESS})) == [
        "Epsilon",
        "beta review",
        "Alpha report",
    ]
    assert titles(populated, tags=frozenset({"work", "urgent"})) == ["beta review"]
    assert titles(populated, priorities=frozenset({Priority.URGENT}), tags=frozenset({"home"})) == [
        "Epsilon"
    ]
    assert titles(populated, text="report") == ["Gamma", "Alpha report"]  # title or description
    assert titles(
        populated,
        due_after=datetime(2026, 12, 2, tzinfo=UTC),
        due_before=datetime(2026, 12, 3, tzinfo=UTC),
    ) == ["delta"]  # after is inclusive, before exclusive; undated tasks never match a range


def test_sort_by_rank_and_with_missing_values_last(populated: TaskService) -> None:
    assert titles(populated, sort=(("priority", True), ("title", False))) == [
        "beta review",
        "Epsilon",
        "Gamma",
        "delta",
        "Alpha report",
    ]
    assert titles(populated, sort=(("due_date", False),))[:3] == [
        "beta review",
        "delta",
        "Alpha report",
    ]
    assert titles(populated, sort=(("due_date", True),))[:3] == [
        "Alpha report",
        "delta",
        "beta review",
    ]
    assert titles(populated, sort=(("status", False),)) == [
        "Alpha report",  # todo (ties broken by id: created first)
        "Epsilon",  # todo
        "beta review",  # in_progress
        "delta",  # blocked
        "Gamma",  # done
    ]
    assert titles(populated, sort=(("title", False),)) == [
        "Alpha report",
        "beta review",
        "delta",
        "Epsilon",
        "Gamma",
    ]


def test_pages_split_the_sorted_result(populated: TaskService) -> None:
    page = populated.list(TaskQuery(sort=(("title", False),), page=2, per_page=2))
    assert [t.title for t in page.items] == ["delta", "Epsilon"]
    assert (page.total, page.pages) == (5, 3)
    last = populated.list(TaskQuery(sort=(("title", False),), page=3, per_page=2))
    assert [t.title for t in last.items] == ["Gamma"]


def test_page_past_the_end_is_rejected(populated: TaskService) -> None:
    with pytest.raises(ValidationProblem) as caught:
        populated.list(TaskQuery(page=4, per_page=2))
    assert caught.value.status == 400
    assert caught.value.extensions["errors"] == [
        {"parameter": "page", "detail": "must be at most 3 (the last page)"}
    ]


def test_an_empty_collection_has_one_empty_page(service: TaskService) -> None:
    page = service.list(TaskQuery())
    assert (page.items, page.total, page.pages) == ([], 0, 1)


def test_sorting_is_stable_on_ties() -> None:
    now = T0
    tasks = [Task(id=new_task_id(), title="same", created_at=now, updated_at=now) for _ in range(5)]
    assert sort_tasks(tasks, (("title", False),)) == sorted(tasks, key=lambda t: t.id.int)


# --- seeding -----------------------------------------------------------------------------------


def test_seeding_is_deterministic() -> None:
    first, second = TaskService(InMemoryTaskRepository()), TaskService(InMemoryTaskRepository())
    seed_tasks(first, 30)
    seed_tasks(second, 30)
    one = first.repository.find(TaskQuery(per_page=100)).items
    assert one == second.repository.find(TaskQuery(per_page=100)).items
    assert len(one) == 30
    assert {t.title for t in one} >= {d["title"] for d in DEMO_TASKS}


def test_cached_json_is_exactly_the_serialised_representation(populated: TaskService) -> None:
    from app.core.http_cache import dump_json
    from app.tasks.schemas import task_json, task_page_json, task_to_dict

    page = populated.list(TaskQuery(per_page=3))
    for item in page.items:
        assert task_json(item) == dump_json(task_to_dict(item))
    whole = {
        "items": [task_to_dict(item) for item in page.items],
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
        "pages": page.pages,
    }
    assert task_page_json(page) == dump_json(whole)
    changed = populated.patch(page.items[0].id, {"title": "renamed"})
    assert b'"title":"renamed"' in task_json(changed)  # a new value, never a stale entry
