"""Extension objects, created unbound and bound to each app in ``create_app`` via ``init_app``.

An extension object holds no per-app state (that lives in ``app.extensions``), so two apps in one
process never share anything. Later chapters add the database, JWT, limiter, cache and Socket.IO.
"""

from app.core.health import HealthChecks

health_checks = HealthChecks()
