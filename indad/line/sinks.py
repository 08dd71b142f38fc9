"""Where results go: a :class:`Sink` sends one :class:`~indad.line.result.LineResult` or raises.

Sinks never retry themselves: the :class:`~indad.line.outbox.Outbox` keeps each result on disk and calls
:meth:`Sink.send` again, with back-off, until it returns. A new receiver is one small class with a ``name``
(stable across restarts: the outbox's messages are kept per sink name), ``send`` and ``close``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ..errors import InputError
from .result import LineResult

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Indad-Signature"
ID_HEADER = "X-Indad-Id"


class Sink(Protocol):
    """A receiver of results: ``send`` returns once the receiver has the result, and raises otherwise."""

    name: str

    def send(self, result: LineResult) -> None: ...

    def close(self) -> None: ...


def signature(body: bytes, secret: str) -> str:
    """The ``X-Indad-Signature`` value of a webhook body: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POSTs each result as JSON (:meth:`LineResult.to_json`) to ``url``; a 2xx answer is a delivery.

    With ``secret``, the ``X-Indad-Signature: sha256=HEX`` header carries the HMAC-SHA256 of the body, so the
    receiver can check it came from this indad. ``X-Indad-Id`` carries the result id (drop duplicates by it).
    """

    def __init__(self, url: str, secret: str | None = None, timeout_s: float = 10.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise InputError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url, self.secret, self.timeout_s = url, secret, timeout_s
        self.name = f"webhook:{url}"

    def send(self, result: LineResult) -> None:
        """POST the result; raises on a connection error or an answer other than 2xx."""
        body = result.to_json().encode("utf-8")
        headers = {"Content-Type": "application/json", ID_HEADER: result.id}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(body, self.secret)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                status = reply.status
        except urllib.error.HTTPError as exc:
            raise ConnectionError(f"webhook {self.url} answered {exc.code}") from None
        if not 200 <= status < 300:
            raise ConnectionError(f"webhook {self.url} answered {status}")

    def close(self) -> None:
        """Nothing to release."""


def mqtt_address(url: str) -> dict[str, Any]:
    """Host, port, TLS, user name and password of an ``mqtt://[USER:PASS@]HOST[:PORT]`` (or ``mqtts://``) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise InputError(f"MQTT broker URL must look like mqtt://HOST[:PORT] or mqtts://..., got {url!r}")
    tls = parts.scheme == "mqtts"
    return {
        "host": parts.hostname,
        "port": parts.port or (8883 if tls else 1883),
        "tls": tls,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


def mqtt_client(url: str, client_id: str = "", reconnect_s: tuple[float, float] = (0.5, 5.0)) -> Any:
    """A paho-mqtt client for the broker at ``url``, connecting (and reconnecting) in its own thread."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise InputError("MQTT needs paho-mqtt: pip install 'indad[line]'") from exc
    address = mqtt_address(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if address["username"]:
        client.username_pw_set(address["username"], address["password"])
    if address["tls"]:
        client.tls_set()
    client.reconnect_delay_set(int(max(1, reconnect_s[0])), int(max(1, reconnect_s[1])))
    client.connect_async(address["host"], address["port"], keepalive=30)
    client.loop_start()
    return client


class MqttSink:
    """Publishes each result to ``PREFIX/MODEL/result`` (QoS 1, retained: a new subscriber gets the last result
    of each model at once) on the broker at ``url``; a delivery is the broker's PUBACK."""

    def __init__(self, url: str, prefix: str = "indad", timeout_s: float = 10.0) -> None:
        mqtt_address(url)  # checked before any connection
        self.url, self.prefix, self.timeout_s = url, prefix.strip("/"), timeout_s
        self.name = f"mqtt:{url}/{self.prefix}"
        self._client: Any = None
        self._lock = threading.Lock()

    def topic(self, result: LineResult) -> str:
        """The topic of a result: ``PREFIX/MODEL/result``."""
        return f"{self.prefix}/{result.model or 'model'}/result"

    def send(self, result: LineResult) -> None:
        """Publish the result and wait for the broker's acknowledgement; raises when not connected or unanswered."""
        with self._lock:
            fresh = self._client is None
            if fresh:
                self._client = mqtt_client(self.url)
            client = self._client
        end = time.monotonic() + (min(self.timeout_s, 3.0) if fresh else 0.0)
        while fresh and not client.is_connected() and time.monotonic() < end:
            time.sleep(0.02)  # the first connection is on its way
        if not client.is_connected():
            raise ConnectionError(f"MQTT broker {self.url} is not connected")
        info = client.publish(self.topic(result), result.to_json(), qos=1, retain=True)
        if info.rc != 0:
            raise ConnectionError(f"MQTT publish to {self.url} failed (rc {info.rc})")
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise ConnectionError(f"MQTT publish to {self.url} failed: {exc}") from None
        if not info.is_published():
            raise TimeoutError(f"MQTT broker {self.url} did not acknowledge within {self.timeout_s} s")

    def close(self) -> None:
        """Disconnect from the broker."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()


def make_sinks(mqtt: Sequence[str] = (), webhooks: Sequence[str] = (), secret: str | None = None) -> list[Sink]:
    """The sinks of the ``--mqtt URL`` and ``--webhook URL`` options (``secret`` signs the webhooks' bodies)."""
    sinks: list[Sink] = [MqttSink(url) for url in mqtt]
    sinks += [WebhookSink(url, secret) for url in webhooks]
    return sinks
