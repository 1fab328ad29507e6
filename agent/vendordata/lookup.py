"""One ``vendordata_get``: the cache first, then the targets it lacks.

A :class:`VendordataLookup` is built once per agent and holds the long
lived parts: the parsed targets, the :class:`~agent.vendordata.fetcher.Fetcher`
(its connections and threads per target), the keystoneauth session behind
the service token and the per-agent cache.  Answers are cached under the
whole request a target sees, boot roles included; the roles, which never
change once stored, are cached too, so a lookup whose answers are all
cached touches neither the database nor the network.  Otherwise the
instance's boot roles are read (through a callable the caller passes, so
that the database is opened only then) and only the missing targets
asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from oslo_config import cfg

from agent import metrics, validation
from agent.vendordata import auth
from agent.vendordata.cache import MISSING, VendordataCache, request_key
from agent.vendordata.fetcher import Fetcher, FetchResult, build_body
from agent.vendordata.targets import parse_targets

# Nova's API refuses user data over 65535 characters of base64 text.
MAX_USER_DATA = 65535
_INSTANCE_FIELDS = ("uuid", "project_id", "image_id", "hostname", "user_data",
                    "metadata")


def validate_instance(instance: Any) -> dict[str, Any]:
    """Check the ``instance`` argument of ``vendordata_get``.

    :param instance: a dict with ``uuid`` and ``project_id`` (required),
        ``image_id``, ``hostname``, ``user_data`` (strings or null) and
        ``metadata`` (an object of strings, or null).
    :returns: a clean copy, ``uuid`` in canonical form.
    :raises agent.exception.InvalidInput: naming ``instance.<field>`` for a
        missing, unknown or malformed field.
    """
    validation.record("instance", instance, _INSTANCE_FIELDS,
                      required=["uuid", "project_id"])
    return {
        "uuid": validation.uuid("instance.uuid", instance["uuid"]),
        "project_id": validation.required_string("instance.project_id",
                                                 instance["project_id"]),
        "image_id": validation.string("instance.image_id", instance.get("image_id"),
                                      allow_empty=True, nullable=True),
        "hostname": validation.string("instance.hostname", instance.get("hostname"),
                                      allow_empty=True, nullable=True),
        "user_data": validation.string("instance.user_data", instance.get("user_data"),
                                       MAX_USER_DATA, allow_empty=True, nullable=True),
        "metadata": validation.string_map("instance.metadata",
                                          instance.get("metadata"), nullable=True) or {},
    }


@dataclasses.dataclass
class Outcome:
    """What one lookup found.

    :param data: the good answers, ``{target_name: JSON value}``, in the
        configured order of the targets.
    :param failures: the targets that failed, with their reasons.
    """

    data: dict[str, Any]
    failures: list[FetchResult]


class VendordataLookup:
    """Dynamic vendordata for one agent: targets, fetcher, token and cache.

    :param conf: the agent's configuration (``[vendordata]``,
        ``[vendordata_auth]``).
    :raises agent.exception.ConfigurationError: on a malformed or repeated
        target, or unusable ``[vendordata_auth]`` options.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        options = conf.vendordata
        self.targets = parse_targets(list(options.targets))
        self.failure_fatal: bool = options.failure_fatal
        self.cache = VendordataCache(options.cache_ttl, max_bytes=options.cache_max_bytes)
        self.fetcher: Fetcher | None = None
        if self.targets:
            token = auth.service_token(conf)
            self.fetcher = Fetcher(
                connect_timeout=options.connect_timeout,
                read_timeout=options.read_timeout,
                max_response_bytes=options.max_response_bytes,
                deadline=options.deadline, retries=options.retries,
                headers=token.headers if token else None,
                renew=token.renew if token else None,
                max_per_target=options.max_concurrent_per_target,
                verify=auth.tls_verify(conf))

    def lookup(self, instance: Mapping[str, Any],
               load_roles: Callable[[], list[str] | None]) -> Outcome:
        """Return the vendordata of ``instance`` from the cache or the targets.

        :param instance: the instance, checked by :func:`validate_instance`.
        :param load_roles: returns the instance's stored boot roles (None
            when none were stored); called only when the cache does not
            hold them.
        :returns: the answers and the failures; good answers are cached as
            their targets allow, failures never.
        :raises agent.exception.DatabaseUnavailable: from ``load_roles``.
        """
        if not self.targets:
            return Outcome(data={}, failures=[])
        instance_uuid = instance["uuid"]
        roles = self.cache.get_roles(instance_uuid)
        if roles is None:
            roles = load_roles() or []
            # "None stored yet" is kept as long as an answer would be, so
            # roles cast later are seen within the TTL, as answers are.
            self.cache.put_roles(instance_uuid, roles)
        body = build_body(instance, roles)
        key = request_key(body)
        data: dict[str, Any] = {}
        missing = []
        for target in self.targets:
            cached = self.cache.get(target.name, instance_uuid, key)
            if cached is MISSING:
                missing.append(target)
            else:
                metrics.VENDORDATA_CACHE_HITS.labels(target.name).inc()
                data[target.name] = cached
        if not missing:
            return Outcome(data=data, failures=[])

        assert self.fetcher is not None
        results = self.fetcher.fetch_all(missing, body)
        failures = []
        for target in missing:
            result = results[target.name]
            if result.ok:
                metrics.VENDORDATA_ANSWERS.labels(target.name).inc()
                self.cache.put(target.name, instance_uuid, result.data, result.ttl, key)
                data[target.name] = result.data
            else:
                metrics.VENDORDATA_FAILURES.labels(target.name,
                                                   metrics.vendordata_reason(result)).inc()
                failures.append(result)
        # Answers in the order the operator listed the targets.
        ordered = {t.name: data[t.name] for t in self.targets if t.name in data}
        return Outcome(data=ordered, failures=failures)

    def forget_instance(self, instance_uuid: str) -> int:
        """Drop this agent's cached answers for a deleted instance.

        :returns: how many answers were dropped.
        """
        return self.cache.purge_instance(instance_uuid)

    def close(self) -> None:
        """Stop the fetcher's threads and close its connections."""
        if self.fetcher is not None:
            self.fetcher.close()
