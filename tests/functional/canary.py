"""The log canary: sensitive values that must never reach a log or a notification.

Every call the functional ``api`` client makes carries a known token in
its context, and the client remembers the secret values it sends and
receives and the CHAP passwords it is given. Every agent a test starts is
remembered with its log file and master key file. When the session ends,
the ``log_canary`` fixture scans every agent log line and every
notification seen on the session's bus for any of them (SPEC §4).
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
from pathlib import Path
from typing import Any

from agent.context import RequestContextSerializer

CANARY_TOKEN = f"gAAAAAB-canary-auth-token-{uuid.uuid4().hex}"
CANARY_SERVICE_TOKEN = f"gAAAAAB-canary-service-token-{uuid.uuid4().hex}"
MIN_LENGTH = 8  # shorter values would match by chance


def forms(value: str | bytes) -> set[str]:
    """The ways ``value`` could be written into a log line."""
    found: set[str] = set()
    if isinstance(value, str):
        found.add(value)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if raw:
            found |= forms(raw)
    else:
        found |= {value.hex(), base64.b64encode(value).decode(),
                  base64.urlsafe_b64encode(value).decode(), repr(value)[2:-1]}
        try:
            found.add(value.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    # A form of one repeated character ("========", a hostile input of the
    # abuse tests) holds no secret and would match any banner line.
    return {form for form in found if len(form) >= MIN_LENGTH and len(set(form)) > 1}


class Canary:
    """What must never leak, and where to look for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: set[str] = forms(CANARY_TOKEN) | forms(CANARY_SERVICE_TOKEN)
        self.key_files: set[Path] = set()
        self.log_files: set[Path] = set()
        self.notifications: list[dict[str, Any]] = []

    def remember(self, value: str | bytes | None) -> None:
        """Add a sensitive value (text, base64 text or bytes)."""
        if value:
            with self._lock:
                self.values |= forms(value)

    def watch_agent(self, log_file: Path, key_file: Path) -> None:
        """Scan this agent's log, and keep its master key out of every log."""
        with self._lock:
            self.log_files.add(log_file)
            self.key_files.add(key_file)

    def record_notification(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.notifications.append(message)

    def sensitive(self) -> set[str]:
        """Every remembered form, plus the master keys still on disk."""
        values = set(self.values)
        for path in self.key_files:
            try:
                values |= forms(path.read_bytes())
            except OSError:
                continue
        return values

    def leaks(self) -> list[str]:
        """``where: value`` for every sensitive value found in a log or notification."""
        values = self.sensitive()
        found = []
        for path in sorted(self.log_files):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            for number, line in enumerate(lines, 1):
                found += [f"{path}:{number}: {value[:12]}..." for value in values if value in line]
        for message in self.notifications:
            text = repr(message)
            found += [f"notification {message.get('event_type')}: {value[:12]}..."
                      for value in values if value in text]
        return found


CANARY = Canary()


class CanarySerializer(RequestContextSerializer):
    """Puts the canary tokens into every context the test client sends."""

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        values = dict(super().serialize_context(ctxt))
        values["auth_token"] = values.get("auth_token") or CANARY_TOKEN
        values["service_token"] = values.get("service_token") or CANARY_SERVICE_TOKEN
        return values


def _remember_arguments(method: str, kwargs: dict[str, Any]) -> None:
    if method in ("secret_set_value", "key_store"):
        CANARY.remember(kwargs.get("value") if isinstance(kwargs.get("value"), str) else None)


def _remember_result(method: str, result: Any) -> None:
    if method == "secret_get_value" and isinstance(result, str):
        CANARY.remember(result)
    if method in ("key_get", "key_list"):
        for found in result if isinstance(result, list) else [result]:
            if isinstance(found, dict) and isinstance(found.get("value"), str):
                CANARY.remember(found["value"])
    if method == "initialize_connection" and isinstance(result, dict):
        data = result.get("data") or {}
        for key in ("auth_password", "discovery_auth_password"):
            if isinstance(data.get(key), str):
                CANARY.remember(data[key])


class _RecordingCall:
    def __init__(self, prepared: Any) -> None:
        self._prepared = prepared

    def call(self, ctxt: Any, method: str, **kwargs: Any) -> Any:
        _remember_arguments(method, kwargs)
        result = self._prepared.call(ctxt, method, **kwargs)
        _remember_result(method, result)
        return result

    def cast(self, ctxt: Any, method: str, **kwargs: Any) -> None:
        _remember_arguments(method, kwargs)
        self._prepared.cast(ctxt, method, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prepared, name)


class RecordingClient:
    """An RPC client that remembers the sensitive values passing through it."""

    def __init__(self, client: Any) -> None:
        client.serializer = CanarySerializer()
        self._client = client

    def prepare(self, **options: Any) -> _RecordingCall:
        return _RecordingCall(self._client.prepare(**options))

    def call(self, ctxt: Any, method: str, **kwargs: Any) -> Any:
        return _RecordingCall(self._client).call(ctxt, method, **kwargs)

    def cast(self, ctxt: Any, method: str, **kwargs: Any) -> None:
        _RecordingCall(self._client).cast(ctxt, method, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
