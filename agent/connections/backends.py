"""Volume backends: the sections named in ``[DEFAULT] enabled_backends``.

Each section names a driver (``volume_driver``, an entry point of group
``custos.volume_drivers``); its options and the driver's own are
registered on the section when it is loaded, so any section name works.
A backend's initiator data namespace is its ``driver_data_namespace``,
else its ``volume_backend_name``, else the driver's class name.

Any problem (unknown driver, missing or bad option, repeated name) is a
:class:`~agent.exception.ConfigurationError` naming the section, which
stops the agent's start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from oslo_config import cfg

from agent import exception
from agent.drivers.base import VolumeDriver

DRIVER_NAMESPACE = "custos.volume_drivers"
# The section shown in the sample configuration.
EXAMPLE_SECTION = "lvm-1"
MAX_NAMESPACE = 255

backend_opts = [
    cfg.StrOpt("volume_driver",
               help="Driver of this backend: an entry point name of group "
                    "custos.volume_drivers, such as iscsi_chap."),
    cfg.StrOpt("volume_backend_name",
               help="Backend name reported to the volume service; the "
                    "default initiator data namespace."),
    cfg.StrOpt("driver_data_namespace",
               help="Namespace of this backend's initiator data. Default: "
                    "volume_backend_name, else the driver's class name. "
                    "Backends sharing a namespace share the data."),
]


@dataclass(frozen=True)
class Backend:
    """One enabled backend: its section name, namespace and driver instance."""

    name: str
    namespace: str
    driver: VolumeDriver


def driver_class(name: str) -> type[VolumeDriver]:
    """Return the driver class registered under entry point ``name``.

    :raises ConfigurationError: when no such driver exists or it cannot be
        imported.
    """
    found = metadata.entry_points(group=DRIVER_NAMESPACE, name=name)
    if not found:
        raise exception.ConfigurationError(reason=f"unknown volume_driver '{name}'")
    entry_point = next(iter(found))
    try:
        loaded = entry_point.load()
    except (ImportError, AttributeError) as error:
        raise exception.ConfigurationError(
            reason=f"volume_driver '{name}' cannot be loaded ({type(error).__name__})") from None
    if not (isinstance(loaded, type) and issubclass(loaded, VolumeDriver)):
        raise exception.ConfigurationError(
            reason=f"volume_driver '{name}' is not a custos volume driver")
    return loaded


def register_opts(conf: cfg.ConfigOpts, section: str,
                  driver: type[VolumeDriver] | None = None) -> None:
    """Register the backend options, and ``driver``'s, on group ``section``."""
    conf.register_opts(backend_opts, group=section)
    if driver is not None:
        conf.register_opts(driver.driver_opts(), group=section)


def _namespace(options: cfg.ConfigOpts.GroupAttr, driver: type[VolumeDriver]) -> str:
    for candidate in (options.driver_data_namespace, options.volume_backend_name):
        if candidate and candidate.strip():
            return candidate.strip()
    return driver.__name__


def _load_one(conf: cfg.ConfigOpts, name: str) -> Backend:
    if name == "DEFAULT" or (name in conf and "volume_driver" not in conf[name]):
        raise exception.ConfigurationError(
            reason=f"'{name}' in enabled_backends is a custos option group, not a backend")
    register_opts(conf, name)
    options = conf[name]
    if not options.volume_driver:
        raise exception.ConfigurationError(
            reason=f"backend [{name}] sets no volume_driver")
    try:
        driver = driver_class(options.volume_driver)
    except exception.ConfigurationError as error:
        raise exception.ConfigurationError(reason=f"backend [{name}]: {error.kwargs['reason']}")
    try:
        register_opts(conf, name, driver)
        namespace = _namespace(options, driver)
        instance = driver(name, options)
    except cfg.Error as error:
        raise exception.ConfigurationError(
            reason=f"backend [{name}]: {str(error).splitlines()[0]}") from None
    if len(namespace) > MAX_NAMESPACE:
        raise exception.ConfigurationError(
            reason=f"backend [{name}]: namespace longer than {MAX_NAMESPACE} characters")
    return Backend(name=name, namespace=namespace, driver=instance)


def load_backends(conf: cfg.ConfigOpts) -> dict[str, Backend]:
    """Load a driver for every section in ``[DEFAULT] enabled_backends``.

    :returns: ``{section name: Backend}`` in the configured order.
    :raises ConfigurationError: naming the section that is wrong.
    """
    backends: dict[str, Backend] = {}
    for raw in conf.enabled_backends:
        name = raw.strip()
        if not name:
            raise exception.ConfigurationError(reason="enabled_backends has an empty name")
        if name in backends:
            raise exception.ConfigurationError(
                reason=f"backend [{name}] is named twice in enabled_backends")
        backends[name] = _load_one(conf, name)
    return backends


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return a backend section's options, under an example section name."""
    from agent.drivers import iscsi_chap

    return [(EXAMPLE_SECTION, backend_opts + iscsi_chap.opts)]
