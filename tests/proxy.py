"""TCP proxies on loopback for tests: each forwards the connections it accepts to a target and
sees every byte go by. :class:`PartitionProxy` can be cut, to make a network partition between
a home gateway and the broker: while cut, established connections go silent (packets "lost",
as on a dead mobile link) and new connections are refused. :class:`TlsTerminatingProxy` is
the TLS front of a plain listener, as nginx or HAProxy are in many deployments."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self


class LoopbackProxy:
    """Forwards each connection accepted on a free loopback port to ``target``. Subclasses
    decide per chunk whether it passes (:meth:`_passes`) and whether a connection is refused
    (:meth:`_refuses`)."""

    def __init__(
        self, target_host: str, target_port: int, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: accept TLS connections with it (and forward them in plain TCP)."""
        self._target = (target_host, target_port)
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._tls)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._connections:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _refuses(self) -> bool:
        return False

    def _opened(self, connection: int) -> None:
        """The ``connection``-th accepted connection (from 0) reached the target."""

    def _passes(self, connection: int, upstream: bool, data: bytes) -> bool:
        return True

    async def _gathered(self, upstream: bool, source: asyncio.StreamReader, data: bytes) -> bytes:
        """What is sent on in one write, starting with ``data``."""
        return data

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuses():
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        connection, self._accepted = self._accepted, self._accepted + 1
        self._opened(connection)
        self._connections |= {writer, up_writer}
        for source, sink, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(connection, upstream, source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        connection: int,
        upstream: bool,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await source.read(65536):
                data = await self._gathered(upstream, source, data)
                if self._passes(connection, upstream, data):
                    sink.write(data)
                    await sink.drain()
        except (ConnectionError, OSError):
            pass  # the other side went away; closing below is all there is to do
        finally:
            sink.close()
            self._connections.discard(sink)


class PartitionProxy(LoopbackProxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._cut = asyncio.Event()

    @contextlib.asynccontextmanager
    async def partitioned(self) -> AsyncIterator[None]:
        self._cut.set()
        try:
            yield
        finally:
            self._cut.clear()
            # What was open during the cut is dead for good, as after a real outage.
            for writer in list(self._connections):
                writer.close()

    def _refuses(self) -> bool:
        return self._cut.is_set()

    def _passes(self, connection: int, upstream: bool, data: bytes) -> bool:
        return not self._cut.is_set()  # while cut: dropped on the floor


class TlsTerminatingProxy(LoopbackProxy):
    """Takes TLS connections (``certfile``, ``keyfile``) and forwards them in plain TCP. Like
    the stream proxies of nginx and HAProxy, it sends on what the target sent within a short
    while (``gather_s``) in one write, so one TLS record can hold several MQTT packets."""

    def __init__(
        self, target_host: str, target_port: int, certfile: Path, keyfile: Path, gather_s: float
    ) -> None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certfile, keyfile)
        super().__init__(target_host, target_port, tls)
        self._gather_s = gather_s

    async def _gathered(self, upstream: bool, source: asyncio.StreamReader, data: bytes) -> bytes:
        if upstream:
            return data
        gathered = [data]
        with contextlib.suppress(TimeoutError):
            while more := await asyncio.wait_for(source.read(65536), self._gather_s):
                gathered.append(more)
        return b"".join(gathered)
