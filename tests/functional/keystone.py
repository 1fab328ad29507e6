"""A real Keystone of the functional tests' own, on loopback.

:class:`KeystoneServer` runs the ``keystone`` package from the package
index (installed into ``.keystone-venv`` by ``tools/keystone-venv.sh``)
the way a deployment does, scaled down: SQLite in a temporary directory,
fernet tokens, ``keystone-manage db_sync``, ``fernet_setup``,
``credential_setup`` and ``bootstrap`` (in one process:
:mod:`tests.functional.keystone_manage`), and gunicorn on a free port of
127.0.0.1 serving :mod:`tests.functional.keystone_wsgi`. Keystone's in-process cache is on
(without it each validation costs about 250 ms) and passwords are hashed
with bcrypt's fewest rounds.

:meth:`KeystoneServer.populate` then creates, through Keystone's REST API
as the bootstrap ``admin``, what the tests act as:

* project ``service``: users ``custos`` (the agent's own service user),
  ``nova`` and ``cinder`` with role ``service``, ``auditor`` with role
  ``service_auditor``;
* projects ``p1`` and ``p2``: ``alice`` member of p1, ``bob`` member of p2,
  ``dave`` admin of p1 (no system role);
* ``eve`` with role ``member`` on domain ``Default`` only;
* ``admin`` (bootstrap) is admin of project ``admin`` and of the system.

Bootstrap makes ``admin`` imply ``manager``, ``manager`` imply ``member``
and ``member`` imply ``reader``, so tokens carry the implied roles too.

Tests may :meth:`~KeystoneServer.stop` the server (a Keystone outage) and
:meth:`~KeystoneServer.start` it again on the same port with the same
data; issued tokens stay valid. Expired tokens come from a second server
on the same database and keys whose tokens live a few seconds
(:meth:`~KeystoneServer.expired_token`); every other token lives an hour.
Every file, logs included, is in :attr:`KeystoneServer.base`, removed by
:meth:`~KeystoneServer.remove`; the logs are shown when a start fails.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests.functional.private_services import free_port, listening

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".keystone-venv"
INSTALL = REPO / "tools" / "keystone-venv.sh"
DOMAIN = "Default"
DOMAIN_ID = "default"
REGION = "RegionOne"
# Seconds an expired token lived (see expired_token).
SHORT_LIFETIME = 2
# keystone-manage's key setup makes its files owned by this user and group.
OWNER = (pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name)

SERVICE_USERS = ("custos", "nova", "cinder")
# user -> (project, role) assignments made by populate(); eve's is on the domain.
ASSIGNMENTS = {
    "custos": ("service", "service"),
    "nova": ("service", "service"),
    "cinder": ("service", "service"),
    "auditor": ("service", "service_auditor"),
    "alice": ("p1", "member"),
    "bob": ("p2", "member"),
    "dave": ("p1", "admin"),
}
DOMAIN_USERS = {"eve": "member"}


class KeystoneError(RuntimeError):
    """Keystone could not be installed, prepared or started (logs in the message)."""


def install() -> None:
    """Install Keystone into .keystone-venv unless it is there already.

    :raises KeystoneError: when the installation fails; its output is in
        the message.
    """
    result = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise KeystoneError(f"{INSTALL} failed:\n{result.stdout}{result.stderr}")


class _Instance:
    """One gunicorn serving Keystone from a set of configuration files."""

    def __init__(self, base: Path, name: str, config_files: list[Path]) -> None:
        self.base = base
        self.name = name
        self.config_files = config_files
        self.port = free_port()
        self.log = base / f"{name}-gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Identity v3 URL of this gunicorn."""
        return f"http://127.0.0.1:{self.port}/v3"

    def start(self, logs: Callable[[], str]) -> None:
        """Start gunicorn; returns once Keystone answers on :attr:`url`.

        :param logs: gives the logs to show when it does not start.
        :raises KeystoneError: when it exits or does not answer in time.
        """
        env = dict(os.environ,
                   OS_KEYSTONE_CONFIG_FILES=";".join(str(p) for p in self.config_files),
                   PYTHONPATH=str(REPO))
        env.pop("VIRTUAL_ENV", None)
        command = [str(VENV / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                   # One process: revocations reach the cache that answers next.
                   "--workers", "1", "--worker-class", "gthread", "--threads", "4",
                   "--timeout", "120",
                   "--chdir", str(self.base), "--error-logfile", str(self.log),
                   "tests.functional.keystone_wsgi:application"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise KeystoneError(f"Keystone ({self.name}) exited with "
                                    f"{self.process.returncode}:\n{logs()}")
            if listening(self.port) and self._answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise KeystoneError(f"Keystone ({self.name}) did not answer on "
                                    f"{self.url}:\n{logs()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return ks_session.Session().get(self.url, raise_exc=False,
                                            timeout=5).status_code == 200
        except Exception:  # noqa: BLE001 - not serving yet
            return False

    def running(self) -> bool:
        """True while gunicorn runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, crash: bool = False) -> None:
        """Stop gunicorn and wait until the port is closed.

        SIGINT, not SIGTERM: open connections are cut rather than waited
        for. With ``crash`` every process of the group is killed instead:
        the port closes within milliseconds however busy the machine is,
        where a clean stop may take seconds.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if crash else signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self.process = None
        deadline = time.monotonic() + 15
        while listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


class KeystoneServer:
    """A Keystone on a free port of 127.0.0.1 with its own SQLite database and keys.

    :meth:`start` prepares it on first use (database, keys, bootstrap),
    then serves it; :meth:`populate` adds the tests' projects and users.

    :ivar base: its directory: configuration, database, keys and logs.
    """

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="custos-keystone-"))
        self.passwords: dict[str, str] = {"admin": secrets.token_urlsafe(16)}
        self._ids: dict[tuple[str, str], str] = {}
        self._prepared = False
        self._config = self.base / "keystone.conf"
        self._main = _Instance(self.base, "keystone", [self._config])
        self._short = _Instance(self.base, "keystone-short",
                                [self._config, self.base / "keystone-short.conf"])
        self._admin: ks_session.Session | None = None

    # -- addresses and names -------------------------------------------------

    @property
    def url(self) -> str:
        """The Identity v3 URL, e.g. ``http://127.0.0.1:PORT/v3``."""
        return self._main.url

    @property
    def port(self) -> int:
        """The port on 127.0.0.1; it stays the same across :meth:`stop` and :meth:`start`."""
        return self._main.port

    def project_id(self, name: str) -> str:
        """The id of project ``name`` (after :meth:`populate`, or ``admin``)."""
        return self._id("projects", name)

    def user_id(self, name: str) -> str:
        """The id of user ``name``."""
        return self._id("users", name)

    def role_id(self, name: str) -> str:
        """The id of role ``name``."""
        return self._id("roles", name)

    def _id(self, kind: str, name: str) -> str:
        if (kind, name) not in self._ids:
            found = self.admin_session().get(f"{self.url}/{kind}",
                                             params={"name": name}).json()[kind]
            if not found:
                raise KeyError(f"no {kind[:-1]} named {name!r}")
            self._ids[(kind, name)] = found[0]["id"]
        return self._ids[(kind, name)]

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Prepare the server on first use, then serve it; returns once it answers.

        :raises KeystoneError: when a step fails; the logs are in the message.
        """
        if not self._prepared:
            self._prepare()
        self._main.start(self.logs)

    def stop(self) -> None:
        """Stop serving (an outage): the port refuses connections until :meth:`start`."""
        self._main.stop()

    def running(self) -> bool:
        """True while the main server's process runs."""
        return self._main.running()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Keystone down inside the block and started again after it, whatever happens.

        It goes down as a crashed host does, at once: a test that checks
        what the agent still remembers must not lose part of its cache
        time to a slow shutdown.
        """
        self._main.stop(crash=True)
        try:
            yield
        finally:
            self.start()

    def remove(self) -> None:
        """Stop both servers and remove every file."""
        try:
            self._short.stop()
            self._main.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def logs(self) -> str:
        """The tail of each log file, for an error message."""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
                         for path in sorted(self.base.glob("*.log")))

    def _prepare(self) -> None:
        for name in ("fernet-keys", "credential-keys"):
            (self.base / name).mkdir(mode=0o700)
        self._config.write_text(_config(self.base))
        (self.base / "keystone-short.conf").write_text(
            f"[DEFAULT]\nlog_file = {self.base / 'keystone-short.log'}\n"
            f"[token]\nexpiration = {SHORT_LIFETIME}\n")
        owner = f"--keystone-user {OWNER[0]} --keystone-group {OWNER[1]}"
        self._manage("db_sync", f"fernet_setup {owner}", f"credential_setup {owner}",
                     f"bootstrap --bootstrap-region-id {REGION} --bootstrap-public-url "
                     f"{self.url} --bootstrap-internal-url {self.url}")
        self._prepared = True

    def _manage(self, *commands: str) -> None:
        """Run keystone-manage ``commands`` in order, in one process (keystone_manage.py).

        :raises KeystoneError: when one fails; its output and the logs are
            in the message.
        """
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("OS_BOOTSTRAP_")}
        # In the environment rather than on a command line others can read.
        env.update(OS_BOOTSTRAP_PASSWORD=self.passwords["admin"], PYTHONPATH=str(REPO))
        result = subprocess.run([str(VENV / "bin" / "python"), "-P", "-m",
                                 "tests.functional.keystone_manage", str(self._config),
                                 *commands], env=env, cwd=self.base, capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            raise KeystoneError(f"keystone-manage {', '.join(commands)} failed:\n"
                                f"{result.stdout}{result.stderr}\n{self.logs()}")

    # -- the tests' projects and users ---------------------------------------

    def admin_session(self) -> ks_session.Session:
        """A keystoneauth1 session of the bootstrap ``admin``, system-scoped."""
        if self._admin is None:
            self._admin = ks_session.Session(auth=v3.Password(
                auth_url=self.url, username="admin", password=self.passwords["admin"],
                user_domain_id=DOMAIN_ID, system_scope="all"))
        return self._admin

    def populate(self) -> None:
        """Create the projects, users, roles and assignments the module docstring lists."""
        admin = self.admin_session()
        for role in admin.get(f"{self.url}/roles").json()["roles"]:
            self._ids[("roles", role["name"])] = role["id"]
        for role in {role for _, role in ASSIGNMENTS.values()} | set(DOMAIN_USERS.values()):
            if ("roles", role) not in self._ids:
                self._create("roles", {"name": role})
        for project in sorted({project for project, _ in ASSIGNMENTS.values()}):
            self._create("projects", {"name": project, "domain_id": DOMAIN_ID})
        for user in (*ASSIGNMENTS, *DOMAIN_USERS):
            self.passwords[user] = secrets.token_urlsafe(16)
            self._create("users", {"name": user, "domain_id": DOMAIN_ID,
                                   "password": self.passwords[user]})
        for user, (project, role) in ASSIGNMENTS.items():
            admin.put(f"{self.url}/projects/{self.project_id(project)}/users/"
                      f"{self.user_id(user)}/roles/{self.role_id(role)}")
        for user, role in DOMAIN_USERS.items():
            admin.put(f"{self.url}/domains/{DOMAIN_ID}/users/{self.user_id(user)}/roles/"
                      f"{self.role_id(role)}")

    def _create(self, kind: str, body: dict[str, str]) -> None:
        created = self.admin_session().post(f"{self.url}/{kind}",
                                            json={kind[:-1]: body}).json()[kind[:-1]]
        self._ids[(kind, body["name"])] = created["id"]

    # -- tokens --------------------------------------------------------------

    def password_auth(self, user: str, project: str | None = None, *, system: bool = False,
                      domain: str | None = None, url: str | None = None) -> v3.Password:
        """A keystoneauth1 password plugin of ``user`` with the given scope.

        :param project: scope to this project (in domain ``Default``).
        :param system: scope to the system instead.
        :param domain: scope to this domain (by name) instead.
        :param url: another Identity URL than :attr:`url`.
        """
        scope: dict[str, Any] = {}
        if project is not None:
            scope = {"project_name": project, "project_domain_id": DOMAIN_ID}
        elif system:
            scope = {"system_scope": "all"}
        elif domain is not None:
            scope = {"domain_name": domain}
        return v3.Password(auth_url=url or self.url, username=user,
                           password=self.passwords[user], user_domain_id=DOMAIN_ID, **scope)

    def session(self, user: str, project: str | None = None, **scope: Any) -> ks_session.Session:
        """A keystoneauth1 session authenticated as ``user`` (scope as :meth:`password_auth`)."""
        return ks_session.Session(auth=self.password_auth(user, project, **scope))

    def token(self, user: str, project: str | None = None, *, system: bool = False,
              domain: str | None = None) -> str:
        """A new token of ``user``: project-scoped, system-scoped or domain-scoped.

        With none of ``project``, ``system`` and ``domain`` the token is
        unscoped (the tests' users have no default project).
        """
        return str(self.session(user, project, system=system, domain=domain).get_token())

    def expired_token(self, user: str, project: str | None = None, *, system: bool = False,
                      domain: str | None = None) -> str:
        """A token of ``user`` that has expired; Keystone validates it with ``allow_expired``.

        It is issued by a second server on the same database and keys whose
        tokens live ``SHORT_LIFETIME`` seconds (started on first use), and
        returned once it has expired.
        """
        if not self._short.running():
            self._short.start(self.logs)
        plugin = self.password_auth(user, project, system=system, domain=domain,
                                    url=self._short.url)
        sess = ks_session.Session(auth=plugin)
        token = str(sess.get_token())
        expires = plugin.get_access(sess).expires
        assert expires is not None
        wait = (expires - datetime.now(timezone.utc)).total_seconds() + 1
        time.sleep(max(wait, 0))
        return token

    def revoke(self, token: str) -> None:
        """Revoke ``token`` (``DELETE /v3/auth/tokens`` as admin)."""
        self.admin_session().delete(f"{self.url}/auth/tokens",
                                    headers={"X-Subject-Token": token})

    # -- configuration for custos and its callers ----------------------------

    def agent_options(self) -> dict[str, str]:
        """The agent's ``[keystone_authtoken]`` options (keystonemiddleware's names)."""
        return {"www_authenticate_uri": self.url, "auth_type": "password",
                "auth_url": self.url, "username": "custos",
                "password": self.passwords["custos"], "user_domain_name": DOMAIN,
                "project_name": "service", "project_domain_name": DOMAIN,
                "interface": "internal"}

    def service_user_options(self, name: str) -> dict[str, str]:
        """The ``[service_user]`` options of a calling service (``nova``, ``cinder``).

        As Nova and Cinder write that section: keystoneauth1's password
        plugin options and ``send_service_user_token``.
        """
        if name not in SERVICE_USERS:
            raise KeyError(f"{name!r} is not a service user ({', '.join(SERVICE_USERS)})")
        return {"send_service_user_token": "true", "auth_type": "password",
                "auth_url": self.url, "username": name, "password": self.passwords[name],
                "user_domain_name": DOMAIN, "project_name": "service",
                "project_domain_name": DOMAIN}


def _config(base: Path) -> str:
    return f"""\
[DEFAULT]
log_file = {base / 'keystone.log'}

[database]
connection = sqlite:///{base / 'keystone.db'}

[token]
provider = fernet

[fernet_tokens]
key_repository = {base / 'fernet-keys'}

[fernet_receipts]
key_repository = {base / 'fernet-keys'}

[credential]
key_repository = {base / 'credential-keys'}

[identity]
# bcrypt's fewest rounds: users are created and authenticate often in tests.
password_hash_rounds = 4

[cache]
enabled = true
backend = oslo_cache.dict
"""


def start_keystone() -> KeystoneServer:
    """Install if needed, start and populate a Keystone; the caller removes it.

    :raises KeystoneError: when any step fails.
    """
    install()
    server = KeystoneServer()
    try:
        server.start()
        server.populate()
    except BaseException:
        server.remove()
        raise
    return server
