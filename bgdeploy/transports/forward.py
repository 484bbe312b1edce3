"""Local port forwards over one SSH connection: 127.0.0.1:<random> here → 127.0.0.1:<port> on the host.

The colours publish their ports only on the host's loopback; validation and health checks reach them
through these forwards, carried by the deploy's single SSH connection (direct-tcpip channels).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from typing import Any

import paramiko

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class PortForward:
    """Accepts local connections in a thread and pipes each through its own direct-tcpip channel."""

    def __init__(self, transport: paramiko.Transport, remote_port: int, remote_address: str = "127.0.0.1") -> None:
        self._transport = transport
        self._remote_port = remote_port
        self._remote_address = remote_address
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self._server.settimeout(0.5)
        self.local_port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"forward-{remote_port}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client, peer), daemon=True).start()

    def _pipe(self, client: socket.socket, peer: tuple[str, int]) -> None:
        try:
            channel = self._transport.open_channel(
                "direct-tcpip", (self._remote_address, self._remote_port), peer, timeout=10
            )
        except (paramiko.SSHException, OSError) as exc:
            # The host refused (nothing listens yet): close the client so it sees a refused/reset connection,
            # exactly what a direct connection would see while the model loads.
            log.debug("forward to host port %s refused: %s", self._remote_port, exc)
            client.close()
            return
        try:
            while not self._closed.is_set():
                watched: list[Any] = [client, channel]
                readable, _, _ = select.select(watched, [], [], 0.5)
                if client in readable:
                    data = client.recv(_CHUNK)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(_CHUNK)
                    if not data:
                        break
                    client.sendall(data)
        except (OSError, paramiko.SSHException) as exc:
            log.debug("forward to host port %s ended: %s", self._remote_port, exc)
        finally:
            channel.close()
            client.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            # shutdown() wakes a thread blocked in accept() at once; close() alone may not.
            self._server.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=2)
