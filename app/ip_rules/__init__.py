"""IP allow and deny lists (chapter 4): the platform's deny list, enforced here before anything
else runs, and each workspace's allow list, enforced by the workspace service.

``init_ip_deny_list(app)`` installs the deny check as the app's *first* ``before_request``
hook, whatever was registered before it: an address on the list gets a 403 ``address-denied``
on every path (health, docs, preflights and unknown URLs included), before authentication, rate
limits and routing's own answers, so it learns nothing, not even whether its token is valid.
The client's address is ``REMOTE_ADDR`` after ``app.core.proxies``: with ``TRUSTED_PROXIES``
set, the entry the proxies wrote, never one the client did.
"""

from __future__ import annotations

import functools
import time

from flask import Flask, request

from app.ip_rules.service import AddressDenied, Clock, DenyList, IpRuleService, load_deny_networks

EXTENSION = "ip_deny_list"


def ip_rule_service() -> IpRuleService:
    from app.db import db
    from app.workspaces import workspace_service

    return IpRuleService(db.session(), workspace_service())


def init_ip_deny_list(app: Flask, *, clock: Clock = time.monotonic) -> DenyList:
    """Refuse requests from the platform's deny list (call it after init_databases)."""
    control = app.extensions["shards"].control
    deny_list = DenyList(functools.partial(load_deny_networks, control), clock=clock)
    app.extensions[EXTENSION] = deny_list

    def refuse_denied_addresses() -> None:
        if deny_list.denies(request.remote_addr):
            raise AddressDenied()

    # First in line, even if another hook was registered earlier: nothing else may answer a
    # denied address (Flask runs the app's hooks in list order, before any blueprint's).
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_denied_addresses)
    return deny_list


def deny_list_of(app: Flask) -> DenyList:
    deny_list: DenyList = app.extensions[EXTENSION]
    return deny_list


def invalidate_deny_list(app: Flask) -> None:
    """After a change: this worker reloads the list on its next request (the others within
    ``IP_RULES_REFRESH`` seconds)."""
    deny_list: DenyList | None = app.extensions.get(EXTENSION)
    if deny_list is not None:
        deny_list.invalidate()
