"""IP lists, free of HTTP: the platform's deny list and each workspace's allow list.

Rules are networks in CIDR notation (``203.0.113.0/24``, ``2001:db8::/32``; an address alone is
a /32 or /128), stored normalised (``2001:DB8:0::/32`` becomes ``2001:db8::/32``), so the same
network cannot be listed twice under two spellings. What a rule may be:

* plain ASCII CIDR: no zone ids (``fe80::1%eth0``), no netmasks (``/255.255.255.0``), no other
  scripts' digits, no spaces; an octet with a leading zero is refused (octal or decimal?);
* no host bits (``10.0.0.5/8`` is refused and the network, ``10.0.0.0/8``, suggested): a rule
  with host bits is a typo or a misunderstanding, and widening it silently could deny or allow
  millions of addresses nobody meant to;
* IPv4-mapped IPv6 networks (``::ffff:192.0.2.0/120``) are stored as the IPv4 network they
  mean, and a client connecting as ``::ffff:192.0.2.7`` (a dual-stack socket) is judged as
  ``192.0.2.7``: one address, one answer, however the socket spelt it;
* on the deny list, nothing broader than an IPv4 /8 or an IPv6 /16 (``0.0.0.0/0`` would shut
  the service for everyone: a typo such as /1 for /21, or a job for the firewall, not this
  list), and never the caller's own address, so an administrator cannot lock themselves out.

The deny list (``workspace_id`` NULL) refuses matching addresses everything, before
authentication. A workspace's allow list, once it has a rule, admits only matching addresses to
that workspace; removing its last rule turns it off. A change that leaves an allow list on must
keep the caller's own address in it (422 otherwise). Lists are bounded: ``MAX_DENY_RULES``
and ``MAX_ALLOW_RULES``. Every change is an audit event in the control database: the deny
list's in the global chain, a workspace's in its own.

Enforcement: ``DenyList`` keeps the compiled deny list per process and reloads it at most every
``IP_RULES_REFRESH`` seconds (a change reaches every worker within that); ``workspace_allows``
checks an address against a workspace's allow list with one query.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from app.audit.service import lock_chain, record_event
from app.auth.models import IpRuleRow
from app.auth.permissions import Action
from app.auth.principal import PrincipalKind
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.db.shards import outside_transaction
from app.tasks.models import new_task_id, utc_now
from app.workspaces.models import WorkspaceRow

if TYPE_CHECKING:  # the workspace service will call workspace_allows: no import cycle
    from app.workspaces.service import WorkspaceService

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_DENY_RULES = 1000  # the platform's list: abusive networks, not a geography
MAX_ALLOW_RULES = 100  # a workspace's offices, VPNs and CI runners
# The broadest deny rule: an IPv4 /8 (the largest block ever assigned to one organisation) and
# an IPv6 /16. Anything broader is a typo or a firewall's job.
MIN_DENY_PREFIX = {4: 8, 6: 16}
IP_RULES_REFRESH = 5.0  # seconds a worker may serve a deny list older than the database's
MAX_NOTE_LENGTH = 200
_MAX_NETWORK_INPUT = 64  # the longest spelling of an IPv6 CIDR is 49 characters
_CIDR_SHAPE = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")  # ASCII only: no zones, no \d
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_MAX_ADDRESS_TEXT = 64  # REMOTE_ADDR is checked by app.core.proxies; this bounds the parse


# --- Problems ------------------------------------------------------------------------------------


class AddressDenied(ApiProblem):
    problem_type = ProblemType(
        slug="address-denied",
        title="Address denied",
        status=403,
        description="The platform refuses requests from your network (its IP deny list). "
        "Contact the service's operators if you think this is a mistake.",
    )

    def __init__(self) -> None:
        super().__init__("Requests from your network are refused.")


class AddressNotAllowed(ApiProblem):
    problem_type = ProblemType(
        slug="address-not-allowed",
        title="Address not allowed",
        status=403,
        description="This workspace accepts requests only from the networks on its IP allow "
        "list, and yours is not one of them. Its owners and admins manage the list.",
    )

    def __init__(self) -> None:
        super().__init__("This workspace does not accept requests from your network.")


class IpRuleNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="ip-rule-not-found",
        title="IP rule not found",
        status=404,
        description="No rule of this IP list has this id.",
    )

    def __init__(self) -> None:
        super().__init__("This list has no rule with this id.")


class IpRuleExists(ApiProblem):
    problem_type = ProblemType(
        slug="ip-rule-exists",
        title="Already on the list",
        status=409,
        description="The list already has a rule for this network (compared normalised).",
    )

    def __init__(self, network: str) -> None:
        super().__init__(f"The list already has a rule for {network}.")


class TooManyIpRules(ApiProblem):
    problem_type = ProblemType(
        slug="too-many-ip-rules",
        title="Too many IP rules",
        status=409,
        description=f"The platform's deny list holds at most {MAX_DENY_RULES} rules and a "
        f"workspace's allow list {MAX_ALLOW_RULES}; remove some, or use broader networks.",
    )


class IpListLockout(ApiProblem):
    problem_type = ProblemType(
        slug="ip-list-lockout",
        title="The change would lock you out",
        status=422,
        description="A deny rule may not cover your own address, and an allow list that stays "
        "on must keep it: otherwise your next request would be refused. Add a rule for your "
        "address first, or make the change from an address that stays allowed.",
    )


# --- Networks and addresses ----------------------------------------------------------------------


class InvalidNetwork(ValueError):
    """Why a value is not an acceptable rule (safe to show: it never echoes the input)."""


def parse_network(value: Any) -> Network:
    """A rule's network from its CIDR text, normalised (IPv4-mapped networks as IPv4)."""
    if not isinstance(value, str) or not value:
        raise InvalidNetwork("must be a network in CIDR notation, such as 203.0.113.0/24")
    if len(value) > _MAX_NETWORK_INPUT or not _CIDR_SHAPE.fullmatch(value):
        raise InvalidNetwork(
            "must be a network in CIDR notation (ASCII digits, no spaces, zone ids or "
            "netmasks), such as 203.0.113.0/24 or 2001:db8::/32"
        )
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidNetwork(
            "is not an IPv4 or IPv6 network (a prefix beyond /32 or /128, an octet over 255 "
            "or with a leading zero?)"
        ) from None
    if network.network_address != ipaddress.ip_address(value.partition("/")[0]):
        raise InvalidNetwork(
            f"has host bits set: the network is {network}; send that, or the address alone"
        )
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def check_deny_breadth(network: Network) -> None:
    smallest = MIN_DENY_PREFIX[network.version]
    if network.prefixlen < smallest:
        raise InvalidNetwork(
            f"is too broad for the deny list: IPv{network.version} rules must be /{smallest} "
            "or narrower (block whole regions at the firewall)"
        )


def client_address(value: str | None) -> Address | None:
    """The address a request is judged by; an IPv4-mapped IPv6 address as its IPv4 address.
    None when there is none or it is not an IP address."""
    if not value or len(value) > _MAX_ADDRESS_TEXT:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class CompiledRules:
    """A list of networks as a few set lookups: per prefix length, the networks' integer
    values. An address is on the list when, masked to one of the lengths, it is in that set:
    at most as many lookups as there are distinct prefix lengths, whatever the list's size."""

    __slots__ = ("_tables", "size")

    def __init__(self, networks: Iterable[Network]) -> None:
        buckets: dict[tuple[int, int], set[int]] = {}
        for network in networks:
            key = (network.version, network.prefixlen)
            buckets.setdefault(key, set()).add(int(network.network_address))
        self.size = sum(len(values) for values in buckets.values())
        tables: dict[int, list[tuple[int, frozenset[int]]]] = {4: [], 6: []}
        for (version, prefixlen), values in sorted(buckets.items()):
            bits = 32 if version == 4 else 128
            mask = ((1 << prefixlen) - 1) << (bits - prefixlen)
            tables[version].append((mask, frozenset(values)))
        self._tables = {version: tuple(table) for version, table in tables.items()}

    def __bool__(self) -> bool:
        return self.size > 0

    def __contains__(self, address: Address) -> bool:
        value = int(address)
        return any(value & mask in networks for mask, networks in self._tables[address.version])


EMPTY_RULES = CompiledRules(())


@functools.lru_cache(maxsize=512)
def compile_stored(networks: tuple[str, ...]) -> CompiledRules:
    """Rules as stored (already normalised); a row someone wrote by hand that does not parse is
    logged and skipped. Cached by content: a list that did not change is not compiled again."""
    parsed: list[Network] = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text))
        except ValueError:
            logger.warning("ip_rules holds a value that is not a network; it is ignored")
    return CompiledRules(parsed)


# --- Enforcement ---------------------------------------------------------------------------------

Clock = Callable[[], float]


class DenyList:
    """The platform's deny list as this process last read it.

    ``denies`` costs an age check and, when the list has rules, one parse and a few set lookups:
    no database query. Once the copy is ``refresh_every`` seconds old the next request reloads
    it (one small query); the other threads meanwhile keep using the old copy. An unreachable
    database leaves the last copy in force and is retried ``refresh_every`` seconds later, not
    on every request: the list filters abusers, and failing closed on a database hiccup would
    take the whole API down with it, health checks included.
    """

    def __init__(
        self,
        load: Callable[[], Sequence[str]],
        *,
        clock: Clock = time.monotonic,
        refresh_every: float = IP_RULES_REFRESH,
    ) -> None:
        self.load = load
        self.clock = clock  # injectable: tests move time instead of sleeping
        self.refresh_every = refresh_every
        self._rules = EMPTY_RULES
        self._networks: tuple[str, ...] = ()
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def denies(self, address: str | None) -> bool:
        rules = self.rules()
        if not rules:
            return False
        parsed = client_address(address)
        return parsed is not None and parsed in rules

    def rules(self) -> CompiledRules:
        loaded_at = self._loaded_at
        if loaded_at is None or self.clock() - loaded_at >= self.refresh_every:
            self._refresh(first=loaded_at is None)
        return self._rules

    def invalidate(self) -> None:
        """Reload before the next check (this process changed the list)."""
        self._loaded_at = None

    def _refresh(self, *, first: bool) -> None:
        # The first load waits (nothing to serve yet); later ones are done by one thread only.
        if not self._lock.acquire(blocking=first):
            return
        try:
            now = self.clock()
            if self._loaded_at is not None and now - self._loaded_at < self.refresh_every:
                return  # another thread reloaded it while this one waited
            try:
                networks = tuple(self.load())
            except SQLAlchemyError:
                logger.warning("IP deny list not reloaded (database unavailable); kept as it was")
            else:
                if networks != self._networks:
                    self._rules, self._networks = compile_stored(networks), networks
            self._loaded_at = now
        finally:
            self._lock.release()


_DENY_NETWORKS = (
    select(IpRuleRow.network).where(IpRuleRow.workspace_id.is_(None)).limit(MAX_DENY_RULES)
)


def load_deny_networks(engine: Engine) -> list[str]:
    """The deny list's networks, on a connection of its own (not the request's session)."""
    with engine.connect() as connection:
        return sorted(connection.execute(_DENY_NETWORKS).scalars())


_WORKSPACE_NETWORKS = (
    select(IpRuleRow.network)
    .where(IpRuleRow.workspace_id == bindparam("workspace_id"))
    .limit(MAX_ALLOW_RULES)
)


def workspace_allows(session: Session, workspace_id: uuid.UUID, client_ip: str | None) -> bool:
    """Whether ``client_ip`` may reach the workspace: True when its allow list is off (no
    rules), else whether a rule contains it. An address that does not parse is not allowed.
    One query; call it once the caller is known to have a role there (an outsider gets the
    404 first, so the answer never tells that the workspace exists)."""
    networks = (
        outside_transaction(session)
        .execute(_WORKSPACE_NETWORKS, {"workspace_id": workspace_id})
        .scalars()
    )
    rules = compile_stored(tuple(sorted(networks)))
    if not rules:
        return True
    address = client_address(client_ip)
    return address is not None and address in rules


# --- Managing the lists --------------------------------------------------------------------------


@dataclass(frozen=True)
class IpRule:
    id: uuid.UUID
    workspace_id: uuid.UUID | None
    network: str
    note: str
    created_by: uuid.UUID | None
    created_at: datetime


def _to_rule(row: IpRuleRow) -> IpRule:
    return IpRule(
        id=row.id,
        workspace_id=row.workspace_id,
        network=row.network,
        note=row.note,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def rule_fields(document: Any, *, deny: bool) -> tuple[Network, str]:
    """Validate ``{network, note?}``: one 422 lists every error."""
    if not isinstance(document, dict):
        raise ValidationProblem([{"pointer": "#", "detail": "must be an object"}])
    errors: list[dict[str, str]] = []
    unknown = sorted(set(document) - {"network", "note"})
    errors += [{"pointer": f"#/{name[:64]}", "detail": "is not a known field"} for name in unknown]
    network: Network | None = None
    try:
        network = parse_network(document.get("network"))
        if deny:
            check_deny_breadth(network)
    except InvalidNetwork as exc:
        errors.append({"pointer": "#/network", "detail": str(exc)})
    note = document.get("note", "")
    if note is None:
        note = ""
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        errors.append({"pointer": "#/note", "detail": f"must be at most {MAX_NOTE_LENGTH} chars"})
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in note):
        errors.append({"pointer": "#/note", "detail": "must not contain control characters"})
    if errors or network is None:
        raise ValidationProblem(errors)
    return network, note.strip()


class IpRuleService:
    """List, add and remove rules, for the caller of ``directory`` (its principal)."""

    def __init__(self, session: Session, directory: WorkspaceService) -> None:
        self.session = session
        self.directory = directory
        self.principal = directory.principal

    # --- the platform's deny list (platform administrators) --------------------------------------

    def list_denied(self) -> list[IpRule]:
        self._require_platform_admin()
        return self._list(None, MAX_DENY_RULES)

    def deny(self, document: Any, caller_address: str | None) -> IpRule:
        """Add a deny rule. ``caller_address``: the request's client, which the rule may not
        cover (None: no request, the CLI)."""
        self._require_platform_admin()
        network, note = rule_fields(document, deny=True)
        caller = client_address(caller_address)
        if caller is not None and caller in CompiledRules([network]):
            raise IpListLockout(
                f"{network} covers your own address ({caller}): you would be locked out."
            )
        with self._platform_write():
            return self._add(None, network, note, MAX_DENY_RULES, "ip_deny_rule.added")

    def remove_denied(self, rule_id: uuid.UUID) -> None:
        self._require_platform_admin()
        with self._platform_write():
            self._remove(None, rule_id, "ip_deny_rule.removed")

    # --- a workspace's allow list (its owners and admins) ----------------------------------------

    def list_allowed(self, workspace_id: uuid.UUID) -> list[IpRule]:
        self.directory.access(workspace_id, Action.IP_ALLOW_LIST_MANAGE)
        return self._list(workspace_id, MAX_ALLOW_RULES)

    def allow(self, workspace_id: uuid.UUID, document: Any, caller_address: str | None) -> IpRule:
        """Add an allow rule; the list with it must contain ``caller_address`` (None: no
        request, the CLI: not checked)."""
        self.directory.access(workspace_id, Action.IP_ALLOW_LIST_MANAGE)
        network, note = rule_fields(document, deny=False)
        with self._workspace_write(workspace_id):
            current = self._networks(workspace_id)
            rule = self._add(workspace_id, network, note, MAX_ALLOW_RULES, "ip_allow_rule.added")
            self._keep_caller_allowed([*current, network], caller_address)
            return rule

    def remove_allowed(
        self, workspace_id: uuid.UUID, rule_id: uuid.UUID, caller_address: str | None
    ) -> None:
        """Remove an allow rule. The last one turns the list off (every address allowed);
        otherwise what remains must contain ``caller_address``."""
        self.directory.access(workspace_id, Action.IP_ALLOW_LIST_MANAGE)
        with self._workspace_write(workspace_id):
            self._remove(workspace_id, rule_id, "ip_allow_rule.removed")
            self._keep_caller_allowed(self._networks(workspace_id), caller_address)

    # --- helpers ---------------------------------------------------------------------------------

    def _require_platform_admin(self) -> None:
        from app.core.admin import is_platform_admin  # reads the user's flag, as the gate does

        if self.principal.kind is not PrincipalKind.SYSTEM and not is_platform_admin(
            self.principal
        ):
            raise NotFound()  # the admin surface's answer: the same as an unknown URL

    def _list(self, workspace_id: uuid.UUID | None, limit: int) -> list[IpRule]:
        rows = outside_transaction(self.session).scalars(
            select(IpRuleRow)
            .where(_of_list(workspace_id))
            .order_by(IpRuleRow.created_at, IpRuleRow.id)
            .limit(limit)
        )
        return [_to_rule(row) for row in rows]

    def _networks(self, workspace_id: uuid.UUID | None) -> list[Network]:
        stored = self.session.scalars(select(IpRuleRow.network).where(_of_list(workspace_id)))
        return [ipaddress.ip_network(text) for text in stored]

    def _add(
        self,
        workspace_id: uuid.UUID | None,
        network: Network,
        note: str,
        limit: int,
        action: str,
    ) -> IpRule:
        text = str(network)
        existing = self.session.scalar(
            select(IpRuleRow.id).where(_of_list(workspace_id), IpRuleRow.network == text)
        )
        if existing is not None:
            raise IpRuleExists(text)
        count = self.session.scalar(select(func.count()).where(_of_list(workspace_id))) or 0
        if count >= limit:
            raise TooManyIpRules(f"This list has {count} rules, the most it may hold.")
        row = IpRuleRow(
            id=new_task_id(),
            workspace_id=workspace_id,
            network=text,
            note=note,
            created_by=self.principal.user_id,
            created_at=utc_now(),
        )
        self.session.add(row)
        self.session.flush()
        record_event(
            self.session,
            action=action,
            entity_type="ip_rule",
            entity_id=row.id,
            workspace_id=workspace_id,
            after={"network": text, "note": note},
        )
        return _to_rule(row)

    def _remove(self, workspace_id: uuid.UUID | None, rule_id: uuid.UUID, action: str) -> None:
        row = self.session.get(IpRuleRow, rule_id, with_for_update=True)
        if row is None or row.workspace_id != workspace_id:
            raise IpRuleNotFound()
        self.session.delete(row)
        self.session.flush()
        record_event(
            self.session,
            action=action,
            entity_type="ip_rule",
            entity_id=row.id,
            workspace_id=workspace_id,
            before={"network": row.network, "note": row.note},
        )

    def _keep_caller_allowed(self, networks: list[Network], caller_address: str | None) -> None:
        if caller_address is None and self.principal.kind is PrincipalKind.SYSTEM:
            return  # no request: the CLI cannot lock itself out
        if not networks:
            return  # the list is off: every address is allowed
        caller = client_address(caller_address)
        if caller is None or caller not in CompiledRules(networks):
            shown = caller if caller is not None else "unknown"
            raise IpListLockout(
                f"The allow list would not contain your address ({shown}): add a rule for it "
                "first, or you would be locked out."
            )

    @contextmanager
    def _platform_write(self) -> Iterator[None]:
        with self._begin():
            # Writers of the global chain in turn: the duplicate and size checks hold (the
            # unique index cannot: NULL workspace ids are all distinct to it).
            lock_chain(self.session, None)
            yield

    @contextmanager
    def _workspace_write(self, workspace_id: uuid.UUID) -> Iterator[None]:
        """A write transaction holding the workspace's directory entry (as membership changes
        do), with the caller's right checked again inside it."""
        with self._begin():
            locked = self.session.scalar(
                select(WorkspaceRow.id).where(WorkspaceRow.id == workspace_id).with_for_update()
            )
            if locked is None:
                from app.workspaces.service import WorkspaceNotFound

                raise WorkspaceNotFound()
            self.directory.authorize(workspace_id, Action.IP_ALLOW_LIST_MANAGE)
            yield

    @contextmanager
    def _begin(self) -> Iterator[None]:
        if self.session.in_transaction():
            self.session.rollback()  # end a read: SQLite's shared lock would block the write
        with self.session.begin():
            self.session.connection(execution_options={"write_transaction": True})
            yield


def _of_list(workspace_id: uuid.UUID | None) -> Any:
    if workspace_id is None:
        return IpRuleRow.workspace_id.is_(None)
    return IpRuleRow.workspace_id == workspace_id
