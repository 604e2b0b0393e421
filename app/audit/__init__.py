"""The audit log: every write records an event in its own transaction, chained by hash per
workspace, append-only. ``record_event`` (``app.audit.service``) is the one way to write one."""

# The tasks package first: its task_service wires app.audit.tasks, which needs app.audit.service,
# and app.audit.service uses app.tasks' modules; entering from this side must not find
# app.audit.service half-imported.
import app.tasks  # noqa: E402, F401
