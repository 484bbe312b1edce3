"""The host key an SSH server offers, read before any trust (for `bgdeploy init` to show and pin)."""

from __future__ import annotations

import socket

import paramiko

from bgdeploy.errors import ConnectionLost
from bgdeploy.transports.ssh import SshHost, fingerprint

# The key types asked for, best first: the line pinned in the spec is the first the server has.
PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "rsa-sha2-512", "rsa-sha2-256")


def offered_host_key(host: str, port: int, timeout: float = 15.0, via: SshHost | None = None) -> tuple[str, str]:
    """("ssh-ed25519 AAAA...", "SHA256:...") of the server at host:port. Nothing is authenticated or trusted.
    `via`: a connected jump host that reaches the server (its own key was pinned when it was opened)."""
    sock: socket.socket | paramiko.Channel
    if via is not None:
        sock = via.channel_to(host, port, timeout)
    else:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {exc}; check the address and the firewall") from exc
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        options.key_types = tuple(k for k in PREFERRED if k in options.key_types) or options.key_types
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectionLost(f"{host}:{port} did not complete an SSH handshake: {exc}") from exc
    finally:
        transport.close()
    return f"{key.get_name()} {key.get_base64()}", fingerprint(key)
