"""The GPU host over one verified SSH connection (paramiko).

That one connection carries everything: commands (argv, quoted here and only here), SFTP file writes,
the Docker Engine API (a channel running `docker system dial-stdio`, as docker-py's own ssh:// support
does) and port forwards to the colours. The host key is pinned: unknown or changed keys are refused.
Never AutoAddPolicy, never reads or writes ~/.ssh.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import logging
import posixpath
import select
import shlex
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import paramiko
from paramiko.sftp import CMD_EXTENDED

from bgdeploy.errors import ConnectionLost, RemoteRefused, TransportError, TransportTimeout, UsageError
from bgdeploy.transports.base import CommandResult
from bgdeploy.transports.forward import PortForward

if TYPE_CHECKING:
    import docker


class _ExpectedChannelFailures(logging.Filter):
    """Drops paramiko's ERROR line for a refused port forward: while a model loads nothing listens on its port,
    so every readiness probe is refused; `PortForward` turns that into "not ready yet", and the line, which
    paramiko prints through logging's last-resort handler, would only alarm the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Secsh channel") or "open FAILED" not in str(record.msg)


logging.getLogger("paramiko.transport").addFilter(_ExpectedChannelFailures())

# Keep the Docker API to a few channels: sshd's MaxSessions (10 by default) counts them.
_DOCKER_POOL = 4
_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """A private key from its text (OpenSSH or PEM); the text never reaches a message."""
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException as exc:
            raise UsageError(
                "the SSH private key is encrypted: set BGDEPLOY_SSH_KEY_PASSPHRASE, or use a key without one"
            ) from exc
        except (paramiko.SSHException, ValueError, IndexError):
            continue
    raise UsageError(
        "the SSH private key could not be read (not an OpenSSH/PEM ed25519, ecdsa or rsa private key); check "
        "BGDEPLOY_SSH_KEY / BGDEPLOY_SSH_KEY_FILE"
    )


F = TypeVar("F", bound=Callable[..., Any])


def lost_connection(where: str, exc: BaseException) -> ConnectionLost:
    return ConnectionLost(
        f"the SSH connection to {where} was lost ({type(exc).__name__}: {exc}); nothing more was changed on the "
        "host: run the command again (a deploy converges from where it stopped)"
    )


def _socket_gone(exc: OSError) -> bool:
    """An OSError that says the channel underneath is gone (paramiko: `OSError("Socket is closed")` when a
    closed channel is written to), not an answer from the host's file system."""
    return isinstance(exc, ConnectionError) or "socket is closed" in str(exc).lower()


def _connection_errors(method: F) -> F:
    """paramiko reports a dropped connection as SSHException, EOFError or a bare OSError ("Socket is closed",
    from an SFTP request on a closed channel, e.g. after a long wait for a stale lock): make it our clear
    error. An OSError never leaves a host method unwrapped (it would end the run as an internal error)."""

    @functools.wraps(method)
    def wrapper(self: SshHost, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except ConnectionLost:
            raise
        except (paramiko.SSHException, EOFError, TransportError) as exc:
            cause = exc.__cause__
            gone = isinstance(cause, OSError) and _socket_gone(cause)
            if isinstance(exc, TransportError) and self.connected and not gone:
                raise  # a real answer from the host (permission denied, a full disk), not a lost connection
            if gone:
                self._forget_sftp()
            raise lost_connection(self.description, exc) from exc
        except OSError as exc:
            if self.connected and not _socket_gone(exc):
                raise RemoteRefused(f"{method.__name__} on {self.description} failed: {exc}") from exc
            self._forget_sftp()  # its channel is closed: the next file operation opens a new one
            raise lost_connection(self.description, exc) from exc

    return cast(F, wrapper)


def host_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _Pinned(paramiko.MissingHostKeyPolicy):
    """Refuses a host whose key is not pinned, with the fix in the message."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise TransportError(
            f"the host key of {hostname} is not pinned: the server offered {key.get_name()} {fingerprint(key)}. "
            "Verify it out of band, then put the server's public key line in target.host_key "
            "(or in the file named by target.known_hosts)"
        )


class SshHost:
    """A connected GPU host. Create with `SshHost.connect(...)`; close when done."""

    def __init__(self, client: paramiko.SSHClient, description: str) -> None:
        self._client = client
        self._description = description
        self._sftp: paramiko.SFTPClient | None = None
        self._docker: docker.DockerClient | None = None
        self._forwards: dict[tuple[str, int], PortForward] = {}
        self._lock = threading.Lock()
        # SFTP requests from two threads (the lock heartbeat and the deploy) must not interleave.
        self._sftp_lock = threading.RLock()
        self._home: str | None = None
        self._jump: SshHost | None = None  # the bastion carrying this session, closed with it

    @classmethod
    def connect(
        cls,
        *,
        host: str,
        port: int,
        user: str,
        key: paramiko.PKey,
        host_keys: paramiko.HostKeys,
        timeout: float,
        via: SshHost | None = None,
    ) -> SshHost:
        """Connect and authenticate; `via`: a connected bastion that carries the session (ssh -J)."""
        sock: paramiko.Channel | None = None
        if via is not None:
            try:
                sock = via._transport().open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
            except (paramiko.SSHException, OSError) as exc:
                via.close()
                raise ConnectionLost(
                    f"the jump host {via.description} could not reach {host}:{port}: {exc}; check target.host and "
                    "target.port as the jump host sees them, and that it allows TCP forwarding"
                ) from exc
        client = paramiko.SSHClient()
        # Only the pinned keys count: no system or user known_hosts is loaded.
        for entry in host_keys:
            for key_type, host_key in host_keys[entry].items():
                client.get_host_keys().add(entry, key_type, host_key)
        client.set_missing_host_key_policy(_Pinned())
        where = f"{user}@{host}:{port}"
        try:
            client.connect(
                hostname=host,
                port=port,
                username=user,
                pkey=key,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            if via is not None:
                via.close()
            raise RemoteRefused(
                f"the host key of {host}:{port} does not match the pinned key: expected "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the server offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}. If the server was reinstalled, verify the new key "
                "out of band and update target.host_key; otherwise someone may be intercepting the connection"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteRefused(
                f"SSH authentication failed for {where}: the server refused the key {fingerprint(key)}; add its "
                f"public key to ~{user}/.ssh/authorized_keys on the host, or check target.user"
            ) from exc
        except TransportError:
            client.close()
            raise
        except TimeoutError as exc:
            client.close()
            raise TransportTimeout(
                f"connecting to {where} timed out after {timeout:g}s; check target.host/port and the firewall"
            ) from exc
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            raise ConnectionLost(f"cannot connect to {where}: {exc}; check target.host and target.port") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        host_ = cls(client, where if via is None else f"{where} via {via.description}")
        host_._jump = via
        return host_

    @property
    def description(self) -> str:
        return self._description

    def channel_to(self, host: str, port: int, timeout: float) -> paramiko.Channel:
        """A TCP channel from this host to host:port (ssh -J's hop), for a handshake carried through it."""
        try:
            return self._transport().open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectionLost(
                f"the jump host {self.description} could not reach {host}:{port}: {exc}; check the address as the "
                "jump host sees it, and that it allows TCP forwarding"
            ) from exc

    @property
    def connections_opened(self) -> int:
        return 1

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost(f"the SSH connection to {self._description} was lost; run the command again")
        return transport

    # -- commands -------------------------------------------------------------------------------------

    @_connection_errors
    def run(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        command = shlex.join(argv)  # the only place argv becomes a string: quoted at the SSH boundary
        try:
            channel = self._transport().open_session(timeout=timeout)
            channel.exec_command(command)
            channel.shutdown_write()
            out, err = _drain(channel, timeout, command)
            code = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError) as exc:
            raise TransportError(f"running {argv[0]} on {self._description} failed: {exc}") from exc
        return CommandResult(tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace"))

    # -- files ----------------------------------------------------------------------------------------

    def _forget_sftp(self) -> None:
        """Drop an SFTP client whose channel closed (paramiko never reopens it), so a retry can work."""
        with self._lock:
            sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None:
                try:
                    self._sftp = self._client.open_sftp()
                except (paramiko.SSHException, OSError) as exc:
                    raise RemoteRefused(f"cannot open SFTP on {self._description}: {exc}") from exc
            return self._sftp

    @_connection_errors
    def home(self) -> str:
        with self._sftp_lock:
            if self._home is None:
                try:
                    self._home = self._sftp_client().normalize(".")
                except OSError as exc:
                    raise RemoteRefused(f"cannot find the home directory on {self._description}: {exc}") from exc
            return self._home

    @_connection_errors
    def read_file(self, path: str) -> bytes | None:
        with self._sftp_lock:
            try:
                with self._sftp_client().open(path, "rb") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise RemoteRefused(f"cannot read {path} on {self._description}: {exc}") from exc

    @_connection_errors
    def write_file(self, path: str, data: bytes) -> None:
        """Write to a temporary name, then rename over `path`: readers never see half a file."""
        with self._sftp_lock:
            sftp = self._sftp_client()
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                self.makedirs(posixpath.dirname(path))
                with sftp.open(tmp, "wb") as handle:
                    handle.write(data)
                    _fsync(sftp, handle)
                sftp.posix_rename(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise RemoteRefused(f"cannot write {path} on {self._description}: {exc}") from exc

    @_connection_errors
    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` only if it does not exist (atomic on the server); False when it exists."""
        with self._sftp_lock:
            sftp = self._sftp_client()
            self.makedirs(posixpath.dirname(path))
            failure: OSError | None = None
            # SFTP says only "Failure" when O_EXCL finds the file; a stat tells that apart from a real error.
            # Two tries: the file may vanish between the failed create and the stat (a lock just released).
            for _ in range(2):
                try:
                    with sftp.open(path, "wxb") as handle:  # O_EXCL: fails when it exists
                        handle.write(data)
                    return True
                except OSError as exc:
                    failure = exc
                try:
                    sftp.stat(path)
                    return False
                except FileNotFoundError:
                    continue
                except OSError:
                    break
            raise RemoteRefused(f"cannot create {path} on {self._description}: {failure}") from failure

    @_connection_errors
    def read_from(self, path: str, offset: int) -> bytes:
        """The bytes of `path` after `offset` (b"" when it is missing): for following a log."""
        with self._sftp_lock:
            try:
                with self._sftp_client().open(path, "rb") as handle:
                    handle.seek(offset)
                    return handle.read()
            except FileNotFoundError:
                return b""
            except OSError as exc:
                raise RemoteRefused(f"cannot read {path} on {self._description}: {exc}") from exc

    @_connection_errors
    def size(self, path: str) -> int:
        """Size of `path` in bytes; 0 when it is missing."""
        with self._sftp_lock:
            try:
                return int(self._sftp_client().stat(path).st_size or 0)
            except FileNotFoundError:
                return 0
            except OSError as exc:
                raise RemoteRefused(f"cannot stat {path} on {self._description}: {exc}") from exc

    @_connection_errors
    def rename(self, source: str, target: str) -> None:
        with self._sftp_lock:
            try:
                self._sftp_client().posix_rename(source, target)
            except OSError as exc:
                raise RemoteRefused(f"cannot rename {source} to {target} on {self._description}: {exc}") from exc

    @_connection_errors
    def remove(self, path: str) -> None:
        with self._sftp_lock:
            try:
                self._sftp_client().remove(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise RemoteRefused(f"cannot remove {path} on {self._description}: {exc}") from exc

    @_connection_errors
    def makedirs(self, path: str) -> None:
        with self._sftp_lock:
            sftp = self._sftp_client()
            parts = [p for p in path.split("/") if p]
            current = "/" if path.startswith("/") else ""
            for part in parts:
                current = posixpath.join(current, part) if current else part
                try:
                    if not stat.S_ISDIR(sftp.stat(current).st_mode or 0):
                        raise TransportError(f"{current} on {self._description} exists and is not a directory")
                except FileNotFoundError:
                    try:
                        sftp.mkdir(current, mode=0o755)
                    except OSError as exc:
                        raise RemoteRefused(f"cannot create {current} on {self._description}: {exc}") from exc

    # -- Docker and ports ------------------------------------------------------------------------------

    @_connection_errors
    def docker(self) -> docker.DockerClient:
        with self._lock:
            if self._docker is None:
                self._transport()  # fail clearly when the connection is gone
                self._docker = _docker_over(self._client, self._description)
            return self._docker

    @_connection_errors
    def reach(self, port: int, address: str = "127.0.0.1") -> int:
        """A local port that leads to address:port as seen from the host (a forward over our connection)."""
        with self._lock:
            forward = self._forwards.get((address, port))
            if forward is None:
                forward = self._forwards[(address, port)] = PortForward(self._transport(), port, address)
            return forward.local_port

    def close(self) -> None:
        for forward in self._forwards.values():
            forward.close()
        self._forwards.clear()
        if self._docker is not None:
            # Detach our client first: docker-py's adapter would otherwise close the SSH client itself.
            adapter = getattr(self._docker.api, "_custom_adapter", None)
            if adapter is not None:
                adapter.ssh_client = None
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        self._client.close()
        if self._jump is not None:
            self._jump.close()
            self._jump = None


def _fsync(sftp: paramiko.SFTPClient, handle: paramiko.SFTPFile) -> None:
    """Flush the file to disk before it is renamed into place, so a crash of the host never leaves an empty
    state file or router config behind the new name (OpenSSH's fsync@openssh.com extension)."""
    handle.flush()
    try:
        cast(Any, sftp)._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)  # no public fsync in paramiko
    except OSError as exc:
        # Servers without the extension answer "unsupported": the rename is still atomic, only not durable.
        if "unsupported" not in str(exc).lower() and "not supported" not in str(exc).lower():
            raise


def _drain(channel: paramiko.Channel, timeout: float, command: str) -> tuple[bytes, bytes]:
    """Read stdout and stderr together until the command exits (no deadlock on a full stderr)."""
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if channel.recv_ready():
            out += channel.recv(65536)
            continue
        if channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
            continue
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            return bytes(out), bytes(err)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            channel.close()
            raise TransportTimeout(f"the remote command timed out after {timeout:g}s: {command[:200]}")
        select.select([channel], [], [], min(remaining, 0.5))


def _docker_over(client: paramiko.SSHClient, where: str) -> docker.DockerClient:
    """A docker SDK client whose HTTP connections are `docker system dial-stdio` channels of our connection."""
    import docker
    from docker.constants import DEFAULT_DOCKER_API_VERSION

    # use_ssh_client=True builds docker-py's SSH adapter without letting it open a connection of its own;
    # handing it our client makes each HTTP connection a channel running `docker system dial-stdio`.
    api_client = docker.DockerClient(base_url="ssh://bgdeploy", use_ssh_client=True, version="1.41", timeout=120)
    api: Any = api_client.api  # docker-py exposes no public hook for this: its private adapter is used
    adapter = api._custom_adapter
    adapter.ssh_client = client
    adapter.max_pool_size = _DOCKER_POOL
    try:
        server = api_client.api.version(api_version=False)
    except Exception as exc:
        raise TransportError(
            f"the Docker engine on {where} did not answer through `docker system dial-stdio`: {exc}; check that "
            "the docker CLI is installed there and the SSH user may use it (e.g. member of the docker group)"
        ) from exc
    # Speak the newest API both sides know: new engines refuse old API versions, old engines new ones.
    newest = min(_version_tuple(server.get("ApiVersion", "1.41")), _version_tuple(DEFAULT_DOCKER_API_VERSION))
    api._version = ".".join(str(n) for n in newest)
    return api_client


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())
