"""Dynamic vendordata targets as an operator names them.

``[vendordata] targets`` is a list of ``name@url`` entries, the format of
Nova's ``[api] vendordata_dynamic_targets``.  The name is the key under
which the target's answer appears in the instance's vendordata; the URL is
where the agent POSTs its request.  Everything after the *first* ``@`` is
the URL, so a URL may itself carry ``user:password@host``.

Unlike Nova, which logs and skips a malformed or repeated entry on every
request, custos refuses the whole list at start-up: a target silently
missing from every instance's vendordata is worse than an agent that does
not start.

Error messages name the entry by position and name only, never its URL,
because a URL may hold credentials.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from agent import exception

_SCHEMES = frozenset({"http", "https"})


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One vendordata service.

    :param name: key of this target's answer in the vendordata result.
    :param url: the http(s) URL that requests are POSTed to.
    """

    name: str
    url: str

    def __repr__(self) -> str:
        # The URL may carry credentials; keep it out of reprs that end up
        # in logs and tracebacks.
        return f"Target(name={self.name!r})"


def parse_targets(entries: list[str]) -> list[Target]:
    """Parse ``name@url`` entries into targets, in the given order.

    :param entries: the configured entries; surrounding whitespace of each
        entry, name and URL is ignored.
    :returns: one :class:`Target` per entry.
    :raises agent.exception.ConfigurationError: when an entry has no ``@``,
        an empty name, a URL that is not http or https with a host, or a
        name used by an earlier entry.
    """
    targets: list[Target] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        name, sep, url = entry.strip().partition("@")
        name, url = name.strip(), url.strip()
        if not sep:
            raise exception.ConfigurationError(
                reason=f"vendordata target #{position} is not of the form name@url")
        if not name:
            raise exception.ConfigurationError(
                reason=f"vendordata target #{position} has an empty name")
        if not _is_http_url(url):
            raise exception.ConfigurationError(
                reason=(f"vendordata target '{name}' needs an http or https URL "
                        f"with a host"))
        if name in seen:
            raise exception.ConfigurationError(
                reason=f"vendordata target name '{name}' is used more than once")
        seen.add(name)
        targets.append(Target(name=name, url=url))
    return targets


def _is_http_url(url: str) -> bool:
    if not url or any(ch.isspace() for ch in url):
        return False
    try:
        parts = urlsplit(url)
        # Reading the port validates it (a non-numeric or out-of-range port
        # raises ValueError).
        parts.port
    except ValueError:
        return False
    return parts.scheme.lower() in _SCHEMES and bool(parts.hostname)
