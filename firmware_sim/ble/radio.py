"""A virtual Bluetooth LE radio: bumble controllers on one ``LocalLink``.

Every simulated device and every central gets its own bumble ``Controller`` (a full link-layer
simulation) attached to the same ``LocalLink`` (the "air"). Hosts talk HCI to their controller,
so the GATT, ATT, L2CAP and HCI layers above the radio are the real bumble stack, exactly as
they would be against a USB dongle.

A central (the home gateway) can reach the radio two ways:

- in the same process: :meth:`VirtualRadio.open_central_transport` returns an HCI transport
  wired straight to a new controller;
- from another process: with ``tcp_port`` set, the radio serves one controller over HCI on
  TCP (bumble's ``tcp-server`` transport, as ``bumble/apps/controllers.py`` does) and
  :attr:`VirtualRadio.central_transport` is the string (``tcp-client:127.0.0.1:<port>``) the
  gateway passes to ``bumble``'s ``open_transport``. Port 0 picks a free port; the socket is
  bound before the port is reported, so there is no race with other processes.
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Self

from bumble import hci
from bumble.controller import Controller
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, Transport
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket


class _Controller(Controller):
    """bumble's simulated controller, with LE Create Connection Cancel behaving like real
    hardware (Core spec Vol 4, Part E, 7.8.13): the pending attempt ends with an LE Connection
    Complete event carrying status "Unknown Connection Identifier". bumble 0.0.236 only
    acknowledges the command, which leaves the host's ``connect(timeout=...)`` waiting forever
    and the controller refusing every later connection attempt."""

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        failed = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # scheduled, so that it follows this command's Command Complete event
        asyncio.get_running_loop().call_soon(self.send_hci_packet, failed)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


class VirtualRadio:
    """Async context manager owning the virtual air and the controllers attached to it."""

    def __init__(self, *, tcp_host: str = "127.0.0.1", tcp_port: int | None = None) -> None:
        """``tcp_port=None`` serves no TCP central; ``0`` serves one on a free port."""
        self._tcp_host = tcp_host
        self._tcp_port = tcp_port
        self._link: LocalLink | None = None
        self._tcp_transport: Transport | None = None
        self._bound_port: int | None = None
        self._controllers = 0

    @property
    def link(self) -> LocalLink:
        if self._link is None:
            raise RuntimeError("VirtualRadio is not open; use it with 'async with'")
        return self._link

    async def __aenter__(self) -> Self:
        self._link = LocalLink()  # type: ignore[no-untyped-call]
        if self._tcp_port is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._tcp_host, self._tcp_port))
            self._bound_port = sock.getsockname()[1]
            self._tcp_transport = await open_tcp_server_transport_with_socket(sock)
            _Controller(
                self._controller_name("tcp-central"),
                host_source=self._tcp_transport.source,
                host_sink=self._tcp_transport.sink,
                link=self._link,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        transport, self._tcp_transport = self._tcp_transport, None
        if transport is not None:
            await transport.close()
            # bumble's TCP server transport does not close its listening server itself
            server = getattr(transport, "server", None)
            if isinstance(server, asyncio.Server):
                server.close()
        self._link = None

    def _controller_name(self, role: str) -> str:
        self._controllers += 1
        return f"{role}-{self._controllers}"

    @property
    def central_transport(self) -> str:
        """The bumble transport string a central in another process connects with."""
        if self._bound_port is None:
            raise RuntimeError("this VirtualRadio serves no TCP central (pass tcp_port=0)")
        return f"tcp-client:{self._tcp_host}:{self._bound_port}"

    def new_host(self, role: str = "peripheral") -> Host:
        """A bumble ``Host`` on a fresh controller on this radio, for a simulated device."""
        controller = _Controller(self._controller_name(role), link=self.link)
        return Host(controller, AsyncPipeSink(controller))

    def open_central_transport(self) -> Transport:
        """An in-process HCI transport to a fresh controller, for a central in this process."""
        controller = _Controller(self._controller_name("central"), link=self.link)
        return Transport(controller, AsyncPipeSink(controller))
