"""Policy: one rule per RPC method, checked before its handler runs.

The defaults live here in code; an operator overrides any rule in the
oslo.policy file (``[oslo_policy] policy_file``). The building blocks are
named rules, so an override can reuse them:

``context_is_admin``
    ``admin`` among the user-token roles: the cloud administrator.
``operator`` / ``project_operator``
    An ``[auth] operator_roles`` role in the user token; for
    ``project_operator`` also on the project of the target (admin: any).
``service``
    An ``[auth] service_roles`` role in the *service* token.
``service_caller``
    ``service``, or an ``[auth] service_roles`` role in the user token: a
    service calling with its own token (cinder-volume attaching a volume).
``composite``
    ``project_operator`` AND ``service``: both tokens, neither alone
    (Swift's service-prefix accounts).
``audit``
    An ``[auth] audit_roles`` role in the service token: reads every
    service account and nothing more.
``custos:read_other_project_values``
    Reading the value of a secret or the bytes of a key that belongs to
    another project than the caller's: by default only a system-scoped
    administrator token. Each such read is logged and announced.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from agent import exception
from agent.conf import auth as auth_conf

CONF = cfg.CONF

_enforcer: oslo_policy.Enforcer | None = None
_lock = threading.Lock()

# Decisions are remembered for a second: oslo.policy re-reads the policy
# file's state and inspects every check's signature on each evaluation,
# which was the larger part of a fast request's time in the agent. An edit
# of the policy file takes effect within DECISION_TTL_S.
DECISION_TTL_S = 1.0
_MAX_DECISIONS = 4096
_decisions: dict[tuple[Any, ...], bool] = {}
_decisions_expire = 0.0

ANYONE = "@"
PROJECT_OPERATOR = "rule:project_operator"
ADMIN = "rule:context_is_admin"
COMPOSITE = "rule:composite"
SERVICE_OR_ADMIN = "rule:service or rule:context_is_admin"
SERVICE_CALLER_OR_ADMIN = "rule:service_caller or rule:context_is_admin"
COMPOSITE_OR_AUDIT = "rule:composite or rule:audit"
#: The rule for reading another project's secret value or key bytes.
READ_OTHER_VALUES = "custos:read_other_project_values"

# RPC method -> (default check string, description).
METHOD_RULES: dict[str, tuple[str, str]] = {
    "health": (ANYONE, "Report the agent's version and the state of its parts."),
    "initialize_connection": (SERVICE_CALLER_OR_ADMIN, "Attach a volume to a connector."),
    "terminate_connection": (SERVICE_CALLER_OR_ADMIN, "Detach a volume from a connector."),
    "initiator_data_get": (ADMIN, "Read a driver's private data for an initiator."),
    "initiator_data_update": (COMPOSITE, "Change a driver's private data for an initiator."),
    "secret_define_xml": (PROJECT_OPERATOR, "Define or redefine a secret."),
    "secret_get_xml_desc": (PROJECT_OPERATOR, "Read a secret's definition."),
    "secret_set_value": (PROJECT_OPERATOR, "Set a secret's value."),
    "secret_get_value": (PROJECT_OPERATOR, "Read a secret's value."),
    "secret_undefine": (PROJECT_OPERATOR, "Delete a secret and its key."),
    "secret_list": (PROJECT_OPERATOR, "List secrets."),
    "secret_lookup_by_usage": (PROJECT_OPERATOR, "Find a secret by its usage."),
    "secret_generate": (PROJECT_OPERATOR, "Define a secret with a random value."),
    "volume_glance_metadata_set": (COMPOSITE, "Write a volume's glance metadata."),
    "volume_glance_metadata_get": (PROJECT_OPERATOR, "Read a volume's glance metadata."),
    "volume_glance_metadata_copy": (COMPOSITE, "Copy glance metadata between volumes."),
    "backup_metadata_export": (COMPOSITE, "Sign and store a backup's metadata."),
    "backup_metadata_import": (COMPOSITE, "Verify and restore a backup's metadata."),
    "backup_metadata_get": (COMPOSITE_OR_AUDIT, "Read a stored backup metadata document."),
    "backup_metadata_delete": (COMPOSITE, "Delete a stored backup metadata document."),
    "instance_boot_roles_set": (SERVICE_OR_ADMIN, "Record the roles an instance booted with."),
    "vendordata_get": (SERVICE_OR_ADMIN, "Fetch dynamic vendordata for an instance."),
    "key_create": (PROJECT_OPERATOR, "Generate a symmetric key."),
    "key_create_pair": (PROJECT_OPERATOR, "Generate an asymmetric key pair."),
    "key_store": (PROJECT_OPERATOR, "Keep a key, certificate, passphrase or opaque data."),
    "key_get": (PROJECT_OPERATOR, "Read a managed key or its metadata."),
    "key_list": (PROJECT_OPERATOR, "List managed keys."),
    "key_delete": (PROJECT_OPERATOR, "Delete a managed key."),
    "key_consumer_add": (PROJECT_OPERATOR, "Record a consumer of a managed key."),
    "key_consumer_remove": (PROJECT_OPERATOR, "Forget a consumer of a managed key."),
}


def _any_role(kind: str, roles: list[str]) -> str:
    checks = [f"{kind}:{role}" for role in roles if role]
    return " or ".join(checks) if checks else "!"


def _base_rules(conf: cfg.ConfigOpts) -> list[oslo_policy.RuleDefault]:
    operator_roles = list(dict.fromkeys(["admin", *conf.auth.operator_roles]))
    return [
        oslo_policy.RuleDefault("context_is_admin", "role:admin",
                                "The cloud administrator."),
        oslo_policy.RuleDefault("operator", _any_role("role", operator_roles),
                                "An operator role in the user token."),
        oslo_policy.RuleDefault(
            "project_operator",
            "rule:context_is_admin or "
            "(rule:operator and project_id:%(project_id)s)",
            "An operator of the target's project, or the administrator."),
        oslo_policy.RuleDefault(
            "service", _any_role("service_roles", conf.auth.service_roles),
            "A service role in the service token."),
        oslo_policy.RuleDefault(
            "service_caller",
            "rule:service or " + _any_role("role", conf.auth.service_roles),
            "A service role in the service token, or in the user token of a "
            "service calling with its own token."),
        oslo_policy.RuleDefault(
            "audit", _any_role("service_roles", conf.auth.audit_roles),
            "An audit role in the service token (read-only)."),
        oslo_policy.RuleDefault(
            "composite", "rule:project_operator and rule:service",
            "A user token of a project operator together with a service "
            "token."),
        oslo_policy.RuleDefault(
            READ_OTHER_VALUES, "role:admin and system_scope:all",
            "Read the value of a secret or the bytes of a key that another "
            "project owns. Lists across projects never carry values."),
    ]


def _register_auth_options(conf: cfg.ConfigOpts) -> None:
    # oslopolicy-sample-generator and oslopolicy-checker call list_rules and
    # get_enforcer on a configuration that never imported agent.conf.
    if "auth" not in conf:
        auth_conf.register_opts(conf)


def list_rules(conf: cfg.ConfigOpts | None = None) -> list[oslo_policy.RuleDefault]:
    """Return every default rule: the building blocks, then one per method.

    :param conf: configuration whose ``[auth]`` roles shape the defaults;
        the global ``CONF`` when omitted.
    """
    conf = conf or CONF
    _register_auth_options(conf)
    rules = _base_rules(conf)
    for method, (check, description) in METHOD_RULES.items():
        rules.append(oslo_policy.DocumentedRuleDefault(
            name=f"custos:{method}", check_str=check, description=description,
            operations=[{"path": method, "method": "RPC"}]))
    return rules


def get_enforcer() -> oslo_policy.Enforcer:
    """Return the process's enforcer, built on first use.

    Also the ``oslo.policy.enforcer`` entry point for oslopolicy tools.
    """
    global _enforcer
    with _lock:
        if _enforcer is None:
            enforcer = oslo_policy.Enforcer(CONF)
            enforcer.register_defaults(list_rules(CONF))
            enforcer.load_rules()
            _enforcer = enforcer
        return _enforcer


def reset() -> None:
    """Forget the enforcer, so the next check rebuilds it (tests, reload)."""
    global _enforcer
    with _lock:
        if _enforcer is not None:
            _enforcer.clear()
        _enforcer = None
        _decisions.clear()


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        # Scalars are most credentials; taking them as they are keeps the
        # decision key cheap on every request.
        return tuple(sorted((str(k), v if type(v) in _SCALARS else _frozen(v))
                            for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_frozen(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


# Every attribute oslo.context's to_policy_values() reads: a decision is
# remembered under these, so two contexts equal in them are judged alike.
_POLICY_FIELDS = ("user_id", "user_domain_id", "system_scope", "domain_id", "project_id",
                  "project_domain_id", "is_admin_project", "service_user_id",
                  "service_user_domain_id", "service_project_id",
                  "service_project_domain_id")


def _credentials_key(ctx: Any) -> Any:
    """The key a decision about ``ctx`` is remembered under.

    Built from the attributes its policy values come from, not from the
    values themselves, so that a remembered decision costs no
    ``to_policy_values()``; a context changed in place gets a new key.
    """
    # The class too: one that overrides to_policy_values() may derive other
    # values from the same attributes.
    key = (type(ctx), *(getattr(ctx, name, None) for name in _POLICY_FIELDS),
           tuple(getattr(ctx, "roles", None) or ()),
           tuple(getattr(ctx, "service_roles", None) or ()))
    try:
        hash(key)
    except TypeError:
        return _frozen(key)
    return key


def _decide(rule: str, target: dict[str, Any], ctx: Any) -> bool:
    """Evaluate ``rule``, remembering the answer for :data:`DECISION_TTL_S`."""
    global _decisions_expire
    key = (rule, _frozen(target), _credentials_key(ctx))
    now = time.monotonic()
    with _lock:
        if now >= _decisions_expire:
            _decisions.clear()
            _decisions_expire = now + DECISION_TTL_S
        known = _decisions.get(key)
    if known is not None:
        return known
    try:
        allowed = bool(get_enforcer().enforce(rule, target, _creds(ctx)))
    except oslo_policy.InvalidScope:
        allowed = False
    with _lock:
        if len(_decisions) < _MAX_DECISIONS:
            _decisions[key] = allowed
    return allowed


def _target(ctx: Any, target: dict[str, Any] | None) -> dict[str, Any]:
    """Return the policy target: ``project_id`` only when there is a project.

    A missing key fails ``project_id:%(project_id)s``; a None would be
    formatted as the string ``'None'`` and match a context whose project is
    None as well.
    """
    values: dict[str, Any] = {}
    if ctx.project_id:
        values["project_id"] = ctx.project_id
    for key, value in (target or {}).items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def _creds(ctx: Any) -> dict[str, Any]:
    """Return the context's policy values without the ones it does not have.

    oslo.policy compares ``str()`` of a credential, so a None project would
    match a target project that is the text ``'None'``.
    """
    return {key: value for key, value in ctx.to_policy_values().items()
            if value is not None and value != ""}


def authorize(ctx: Any, method: str, target: dict[str, Any] | None = None) -> None:
    """Check that ``ctx`` may run RPC method ``method`` on ``target``.

    :param ctx: the request context.
    :param method: an RPC method name or a full rule name (``custos:...``).
    :param target: attributes of the object acted on; ``project_id``
        defaults to the context's project.
    :raises Forbidden: when the rule does not allow it, or no rule exists.
    """
    rule = method if ":" in method else f"custos:{method}"
    values = _target(ctx, target)
    if rule not in get_enforcer().registered_rules:
        raise exception.Forbidden(action=rule)
    if not _decide(rule, values, ctx):
        raise exception.Forbidden(action=rule)


def check(ctx: Any, rule: str, target: dict[str, Any] | None = None) -> bool:
    """Return whether ``ctx`` passes ``rule``, a building block or method rule.

    Handlers use it for decisions inside a method, such as whether an
    auditor may read another project's service account.

    :param rule: a rule name (``audit``, ``custos:health``) or the same
        with the ``rule:`` prefix of a check string.
    """
    rule = rule.removeprefix("rule:")
    values = _target(ctx, target)
    return _decide(rule, values, ctx)


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which projects' resources a caller sees: every domain asks this.

    Built by :func:`scope` from a request context; the rules that decide
    visibility live in this class and that function only.

    :param project_id: the caller's project; what it creates belongs to it.
    :param all_projects: the caller sees every project's resources (the
        cloud administrator).
    :param context: the request context, for the decisions that depend on
        a method's policy rule (None: those fall back to :meth:`sees`).
    :param method: the RPC method the scope was made for.
    """

    project_id: str | None
    all_projects: bool = False
    context: Any = dataclasses.field(default=None, compare=False, repr=False)
    method: str | None = None
    system: bool = False

    def sees(self, owner: str | None) -> bool:
        """True when a resource owned by project ``owner`` is visible.

        Its own project's; for the administrator (with a project, or
        system-scoped) every project's and those that have none.
        """
        if not self.project_id:
            return self.all_projects and self.system
        return self.all_projects or owner == self.project_id

    def reads_value_of(self, owner: str | None) -> bool:
        """True when the caller may read the value of a visible resource of ``owner``.

        Its own project's always; another project's only under
        :data:`READ_OTHER_VALUES`.
        """
        if self.project_id and owner == self.project_id:
            return True
        return self.context is not None and check(self.context, READ_OTHER_VALUES,
                                                  {"project_id": owner})

    def writes(self, owner: str | None) -> bool:
        """True when the caller may change a resource of project ``owner``.

        Only in its own project, the administrator too; the administrator
        also writes what has no project (kept from before ownership was
        recorded), which is nobody else's.
        """
        if not self.project_id:
            return False
        return owner == self.project_id or (self.all_projects and owner is None)

    def refuse_write(self, uuid: str) -> exception.CustosException:
        """The refusal of a write to a secret held elsewhere; it names nothing of the holder.

        A member learns nothing (not found); the administrator, who may
        read every project, is told the secret is held elsewhere.
        """
        if self.all_projects:
            return exception.SecretOwnedElsewhere(uuid=uuid)
        return exception.SecretNotFound(secret=uuid)

    @property
    def owner(self) -> str:
        """The caller's project, which owns what it creates.

        :raises Forbidden: a caller without a project owns nothing.
        """
        if not self.project_id:
            raise exception.Forbidden(action="this without a project")
        return self.project_id

    @property
    def project_filter(self) -> str | None:
        """The project a query is held to; None for any project."""
        return None if self.all_projects else self.project_id

    def may_act_on(self, owner: str | None) -> bool:
        """True when the method's rule allows the caller on ``owner``'s resource.

        Unlike :meth:`sees`, this follows the method's policy rule (an
        operator's override, a service or audit role).
        """
        if self.context is None or self.method is None:
            return self.sees(owner)
        return check(self.context, f"custos:{self.method}", {"project_id": owner})

    @property
    def audits(self) -> bool:
        """True for an auditor, who reads every project's service account."""
        return self.context is not None and check(self.context, "audit")

    def require_project(self, action: str) -> Scope:
        """Return this scope when it names a project.

        A context without a project (a domain- or system-scoped token)
        owns nothing and acts on no project's resources, the
        administrator's included: only an administrator acting from a
        project reaches across projects.

        A system-scoped administrator passes too: it owns nothing, writes
        nothing (:meth:`writes`), and sees every project's resources.

        :param action: what the caller tried, for the error.
        :raises Forbidden: a caller without a project.
        """
        if not self.project_id and not (self.all_projects and self.system):
            raise exception.Forbidden(action=action)
        return self


def scope(ctx: Any, method: str | None = None) -> Scope:
    """Return the :class:`Scope` of a request context.

    :param ctx: the request context.
    :param method: the RPC method being served, for :meth:`Scope.may_act_on`.
    """
    return Scope(ctx.project_id, all_projects=check(ctx, "context_is_admin"),
                 context=ctx, method=method,
                 system=getattr(ctx, "system_scope", None) == "all")
