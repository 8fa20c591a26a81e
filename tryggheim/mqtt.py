"""The one place where paho-mqtt's callbacks are bridged into asyncio.

:class:`MqttSession` is an async context manager around one MQTT v5 connection (like aiomqtt):
entering it connects and waits for CONNACK; ``publish`` waits for the broker's PUBACK; received
messages arrive on :meth:`messages`. When the connection drops, every waiter and the message
iterator raise :class:`ConnectionLost` and the session is over: callers reconnect by entering a
new session after a backoff (:func:`backoff_delays`), which keeps reconnect policy in one visible
loop instead of hidden inside the library.

paho drives its socket from callbacks; we register the socket with the event loop's selector
(``add_reader``/``add_writer``) so all protocol work runs on the loop thread. Only the blocking
TCP/TLS connect runs in the default executor, so a slow rural uplink cannot stall the loop; the
socket callbacks it triggers are handed to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, SecretStr

from tryggheim.errors import ConnectionLost

log = logging.getLogger(__name__)

#: Sessions survive a broker restart or a client outage for this long (MQTT v5 session expiry).
SESSION_EXPIRY_S = 7 * 24 * 3600


class MqttSettings(BaseModel):
    """How to reach a broker. Credentials are always required: the brokers we deploy allow no
    anonymous clients."""

    host: str = "127.0.0.1"
    port: int = 8883
    username: str
    password: SecretStr
    tls_ca: Path | None = None
    """CA bundle that signed the broker's certificate; when set, TLS is used and verified."""
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int = 0
    """Packet id, for :meth:`MqttSession.ack` in manual-ack sessions."""
    received_at: float = field(default_factory=time.monotonic, compare=False)
    """When it arrived (monotonic clock, as the event loop's), for latency measurements."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


def backoff_delays(base_s: float = 0.5, cap_s: float = 30.0) -> Iterator[float]:
    """Jittered exponential backoff ("full jitter"): homes that lost the uplink together must not
    reconnect together when it returns."""
    attempt = 0
    while True:
        yield random.uniform(0, min(cap_s, base_s * 2**attempt))
        attempt += 1


_DISCONNECTED = Message("", b"", 0, False)


class MqttSession:
    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_start: bool = False,
        will: Will | None = None,
        manual_ack: bool = False,
    ) -> None:
        """With ``manual_ack`` a received QoS 1 message is acknowledged to the broker only by
        :meth:`ack` — call it once the message is stored, so that a crash before that makes
        the broker deliver it again instead of losing it."""
        self._settings = settings
        self._client_id = client_id
        self._clean_start = clean_start
        self._will = will
        self._peer = f"mqtt://{settings.host}:{settings.port}"
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._lost: ConnectionLost | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._wire_callbacks()

    # --- paho callbacks (all run on the loop thread, except socket ones during connect) ---
    def _wire_callbacks(self) -> None:
        c = self._client
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the loop thread: now if we are on it, else as soon as it can."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # Sockets are passed by file descriptor, taken while the callback runs: paho may close
    # the socket object before a deferred call reaches the loop.
    def _on_socket_open(self, _client: paho.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._loop.add_reader, sock.fileno(), self._read)

    def _read(self) -> None:
        """Take in what the socket has. paho reads about one packet a call, and a TLS record
        can hold several (a TLS-terminating proxy or a broker that gathers its writes): the
        rest waits, decrypted, inside the TLS layer, where the selector cannot see it. It is
        read now, not when the next bytes arrive (the keepalive's, perhaps)."""
        client = self._client
        while client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            sock = client.socket()
            if not isinstance(sock, ssl.SSLSocket) or sock.pending() == 0:
                return

    def _on_socket_close(self, _client: paho.Client, _ud: Any, sock: Any) -> None:
        fd = sock.fileno()
        self._on_loop(self._loop.remove_reader, fd)
        self._on_loop(self._loop.remove_writer, fd)

    def _on_register_write(self, client: paho.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._loop.add_writer, sock.fileno(), client.loop_write)

    def _on_unregister_write(self, _client: paho.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._loop.remove_writer, sock.fileno())

    def _on_connect(
        self, _c: paho.Client, _ud: Any, _flags: Any, rc: ReasonCode, _props: Any
    ) -> None:
        if self._connected.done():
            return
        if rc.is_failure:
            self._connected.set_exception(ConnectionLost(self._peer, f"refused: {rc}"))
        else:
            self._connected.set_result(None)

    def _on_disconnect(
        self, _c: paho.Client, _ud: Any, _flags: Any, rc: ReasonCode, _props: Any
    ) -> None:
        self._fail(ConnectionLost(self._peer, f"disconnected: {rc}"))

    def _on_publish(self, _c: paho.Client, _ud: Any, mid: int, rc: ReasonCode, _props: Any) -> None:
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        if rc.is_failure:
            future.set_exception(ConnectionLost(self._peer, f"publish refused: {rc}"))
        else:
            future.set_result(None)

    def _on_subscribe(
        self, _c: paho.Client, _ud: Any, mid: int, rcs: list[ReasonCode], _props: Any
    ) -> None:
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        refused = [rc for rc in rcs if rc.is_failure]
        if refused:
            future.set_exception(ConnectionLost(self._peer, f"subscribe refused: {refused[0]}"))
        else:
            future.set_result(None)

    def _on_message(self, _c: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        self._messages.put_nowait(
            Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid)
        )

    def _fail(self, error: ConnectionLost) -> None:
        if self._lost is not None:
            return
        self._lost = error
        if not self._connected.done():
            self._connected.set_exception(error)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._messages.put_nowait(_DISCONNECTED)

    # --- lifecycle ---
    async def __aenter__(self) -> Self:
        s = self._settings
        self._client.username_pw_set(s.username, s.password.get_secret_value())
        if s.tls_ca is not None:
            context = ssl.create_default_context(cafile=str(s.tls_ca))
            self._client.tls_set_context(context)
        if self._will is not None:
            self._client.will_set(self._will.topic, self._will.payload, 1, self._will.retain)
        self._client.connect_timeout = s.connect_timeout_s
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            rc = await self._loop.run_in_executor(
                None,
                lambda: self._client.connect(
                    s.host, s.port, s.keepalive_s, clean_start=self._clean_start, properties=props
                ),
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionLost(self._peer, f"cannot connect: {exc}") from exc
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionLost(self._peer, f"cannot connect: {paho.error_string(rc)}")
        self._misc_task = asyncio.create_task(self._misc_loop(), name=f"mqtt-misc-{self._peer}")
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                await self._connected
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._lost is None:
            self._client.disconnect()
        self._fail(ConnectionLost(self._peer, "session closed"))
        if self._misc_task is not None:
            self._misc_task.cancel()
            await asyncio.gather(self._misc_task, return_exceptions=True)
        sock = self._client.socket()
        if sock is not None and sock.fileno() >= 0:
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())

    async def _misc_loop(self) -> None:
        """paho needs a periodic call for keepalive pings and retries."""
        while self._lost is None:
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._fail(ConnectionLost(self._peer, "keepalive failed"))
                return
            await asyncio.sleep(1)

    # --- API ---
    def _check(self) -> None:
        if self._lost is not None:
            raise self._lost

    async def _await_mid(self, rc: MQTTErrorCode, mid: int, what: str) -> None:
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionLost(self._peer, f"{what} failed: {paho.error_string(rc)}")
        future = self._loop.create_future()
        self._pending[mid] = future
        await future

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and, for QoS 1, wait until the broker has taken responsibility (PUBACK)."""
        self._check()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return
        await self._await_mid(info.rc, info.mid, f"publish to {topic}")

    async def subscribe(self, topic: str, *, qos: int = 1) -> None:
        self._check()
        rc, mid = self._client.subscribe(topic, qos=qos)
        assert mid is not None
        await self._await_mid(rc, mid, f"subscribe to {topic}")

    def ack(self, message: Message) -> None:
        """Acknowledge a message of a manual-ack session (see ``manual_ack``)."""
        self._check()
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages until the connection drops (then :class:`ConnectionLost`)."""
        async for batch in self.message_batches(limit=1):
            yield batch[0]

    async def message_batches(
        self,
        limit: int,
        *,
        linger_s: float = 0.0,
        urgent: Callable[[Message], bool] | None = None,
        enough: int | None = None,
    ) -> AsyncIterator[list[Message]]:
        """Received messages, everything already waiting at once (at most ``limit``), so that
        a consumer under load can handle many in one transaction; one at a time when idle.
        Ends like :meth:`messages` when the connection drops.

        With ``linger_s`` a batch waits up to that long after its first message for more (up
        to ``limit``): a consumer whose cost is mostly per batch pays it once for a trickle of
        messages instead of once each. A message that is ``urgent`` ends the wait at once, and
        so does a batch of ``enough`` messages: a manual-ack session gets no more than the
        broker's in-flight maximum unacknowledged, so waiting for more would only stall."""
        upto = min(limit, enough or limit)
        while True:
            batch = [await self._messages.get()]
            self._take_waiting(batch, limit)
            if linger_s > 0 and len(batch) < upto and not self._ends_wait(batch, urgent):
                await self._linger(batch, upto, linger_s, urgent)
            if _DISCONNECTED in batch:
                received = batch[: batch.index(_DISCONNECTED)]
                if received:
                    yield received
                raise self._lost or ConnectionLost(self._peer, "disconnected")
            yield batch

    def _take_waiting(self, batch: list[Message], limit: int) -> None:
        while len(batch) < limit and not self._messages.empty():
            batch.append(self._messages.get_nowait())

    @staticmethod
    def _ends_wait(batch: list[Message], urgent: Callable[[Message], bool] | None) -> bool:
        return any(m is _DISCONNECTED or (urgent is not None and urgent(m)) for m in batch)

    async def _linger(
        self,
        batch: list[Message],
        limit: int,
        linger_s: float,
        urgent: Callable[[Message], bool] | None,
    ) -> None:
        deadline = self._loop.time() + linger_s
        while len(batch) < limit:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await self._messages.get()
            except TimeoutError:
                return
            arrived = [message]
            self._take_waiting(arrived, limit - len(batch))
            batch += arrived
            if self._ends_wait(arrived, urgent):
                return
