"""The testbed's sshd carries what bgdeploy needs: pinned host key, docker, SFTP, port forwards."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


def _public_key(line: str) -> paramiko.PKey:
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def connect(testbed: Any, host_key_line: str | None) -> paramiko.SSHClient:
    """An SSH client that trusts exactly `host_key_line` (or nothing) and never ~/.ssh."""
    client = paramiko.SSHClient()
    if host_key_line is not None:
        key = _public_key(host_key_line)
        name = testbed.host if testbed.port == 22 else f"[{testbed.host}]:{testbed.port}"
        client.get_host_keys().add(name, key.get_name(), key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            testbed.host,
            port=testbed.port,
            username=testbed.user,
            key_filename=testbed.key_file,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
        )
    except BaseException:
        client.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=TIMEOUT_S)
    out = stdout.read().decode()
    err = stderr.read().decode()
    assert stdout.channel.status_event.wait(TIMEOUT_S), f"{command!r}: no exit status"
    return stdout.channel.exit_status, out, err


@pytest.fixture
def ssh(testbed: Any) -> Iterator[paramiko.SSHClient]:
    client = connect(testbed, testbed.host_key)
    yield client
    client.close()


def test_user_is_in_docker_group(ssh: paramiko.SSHClient, testbed: Any) -> None:
    status, out, err = run(ssh, "id -un; id -nG")
    assert status == 0, err
    user, groups = out.splitlines()
    assert user == testbed.user
    assert "docker" in groups.split()


def test_docker_cli_works_over_ssh(ssh: paramiko.SSHClient) -> None:
    status, out, err = run(ssh, "docker version --format '{{.Server.Version}}'")
    assert status == 0, err
    assert out.strip()


def test_docker_api_over_dial_stdio(ssh: paramiko.SSHClient) -> None:
    # The mechanism docker-py's ssh:// uses, and bgdeploy's Docker transport.
    transport = ssh.get_transport()
    assert transport is not None
    channel = transport.open_session(timeout=TIMEOUT_S)
    channel.settimeout(TIMEOUT_S)
    channel.exec_command("docker system dial-stdio")
    channel.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    response = b""
    while len(response) < 65536:
        data = channel.recv(4096)
        if not data:
            break
        response += data
    channel.close()
    assert response.startswith(b"HTTP/1.0 200") or response.startswith(b"HTTP/1.1 200"), response
    assert response.endswith(b"OK")


def test_sftp_upload_then_rename(ssh: paramiko.SSHClient) -> None:
    final = f"/tmp/bgdeploy-test-{uuid.uuid4().hex}.conf"
    sftp = ssh.open_sftp()
    try:
        channel = sftp.get_channel()
        assert channel is not None
        channel.settimeout(TIMEOUT_S)
        with sftp.open(final + ".tmp", "w") as handle:
            handle.write("upstream live { server 127.0.0.1:8001; }\n")
        sftp.posix_rename(final + ".tmp", final)
        status, out, err = run(ssh, f"cat {final}")
        assert status == 0, err
        assert out == "upstream live { server 127.0.0.1:8001; }\n"
    finally:
        for path in (final, final + ".tmp"):
            with contextlib.suppress(OSError):
                sftp.remove(path)
        sftp.close()


def test_port_forward_reaches_the_hosts_loopback(ssh: paramiko.SSHClient, testbed: Any) -> None:
    # Green binds only to the host's 127.0.0.1; bgdeploy reaches it through a direct-tcpip
    # channel. The sshd itself is a handy listener on that loopback.
    transport = ssh.get_transport()
    assert transport is not None
    channel = transport.open_channel("direct-tcpip", ("127.0.0.1", testbed.port), ("127.0.0.1", 0), timeout=TIMEOUT_S)
    try:
        channel.settimeout(TIMEOUT_S)
        assert channel.recv(8) == b"SSH-2.0-"
    finally:
        channel.close()


def test_wrong_pinned_host_key_is_refused(testbed: Any) -> None:
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    assert other.decode().split()[1] != testbed.host_key.split()[1]
    with pytest.raises(paramiko.BadHostKeyException):
        connect(testbed, other.decode())


def test_unknown_host_key_is_refused(testbed: Any) -> None:
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(testbed, None)
