"""Open the GPU host named by the spec: SSH with the pinned host key and the key from the environment,
or this machine for `transport: local`. The private key only ever comes from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko

from bgdeploy.errors import BgdeployError, UsageError
from bgdeploy.spec.models import Target
from bgdeploy.transports.base import Host
from bgdeploy.transports.local import LocalHost
from bgdeploy.transports.ssh import SshHost, host_entry, load_private_key


def _private_key() -> paramiko.PKey:
    text = os.environ.get("BGDEPLOY_SSH_KEY", "").strip()
    path = os.environ.get("BGDEPLOY_SSH_KEY_FILE", "").strip()
    if not text and path:
        try:
            text = Path(path).expanduser().read_text()
        except OSError as exc:
            raise UsageError(f"BGDEPLOY_SSH_KEY_FILE={path}: cannot read it ({exc.strerror})") from exc
    if not text:
        raise UsageError(
            "no SSH private key: set BGDEPLOY_SSH_KEY to the key text (in CI: a secret) or BGDEPLOY_SSH_KEY_FILE "
            "to its path"
        )
    return load_private_key(text + "\n", os.environ.get("BGDEPLOY_SSH_KEY_PASSPHRASE") or None)


def pinned_host_keys(target: Target, spec_dir: Path) -> paramiko.HostKeys:
    """The host keys that may answer: target.host_key, target.known_hosts, and BGDEPLOY_KNOWN_HOSTS."""
    keys = paramiko.HostKeys()
    assert target.host is not None  # the spec checks guarantee it for ssh
    entry = host_entry(target.host, target.port)
    if target.host_key:
        parsed = paramiko.hostkeys.HostKeyEntry.from_line(f"{entry} {target.host_key}")
        if parsed is None or parsed.key is None:
            raise UsageError("target.host_key could not be read as an SSH public key line; see `bgdeploy validate`")
        keys.add(entry, parsed.key.get_name(), parsed.key)
    files = [str(spec_dir / target.known_hosts)] if target.known_hosts else []
    extra = os.environ.get("BGDEPLOY_KNOWN_HOSTS", "").strip()
    if extra and "\n" not in extra and Path(extra).is_file():
        files.append(extra)
    elif extra:
        # The action's known-hosts input: known_hosts lines themselves, not a path.
        for line in extra.splitlines():
            parsed = paramiko.hostkeys.HostKeyEntry.from_line(line.strip()) if line.strip() else None
            if parsed is not None and parsed.key is not None:
                for hostname in parsed.hostnames:
                    keys.add(hostname, parsed.key.get_name(), parsed.key)
    for name in files:
        try:
            keys.load(name)
        except OSError as exc:
            raise UsageError(f"known_hosts file {name}: cannot read it ({exc.strerror})") from exc
    return keys


def open_host(target: Target, spec_dir: Path) -> Host:
    if target.transport == "local":
        return LocalHost()
    assert target.host is not None
    key = _private_key()
    via = _open_jump(target, key) if target.jump is not None else None
    try:
        return SshHost.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            key=key,
            host_keys=pinned_host_keys(target, spec_dir),
            timeout=target.connect_timeout,
            via=via,
        )
    except BgdeployError:
        if via is not None:
            via.close()
        raise


def open_jump(target: Target) -> SshHost:
    """The target's jump host alone (with the key from the environment), e.g. to read the GPU host's key."""
    return _open_jump(target, _private_key())


def _open_jump(target: Target, key: paramiko.PKey) -> SshHost:
    """The bastion, its own key pinned (target.jump.host_key): the GPU server is then reached through it."""
    jump = target.jump
    assert jump is not None
    entry = host_entry(jump.host, jump.port)
    parsed = paramiko.hostkeys.HostKeyEntry.from_line(f"{entry} {jump.host_key}")
    if parsed is None or parsed.key is None:
        raise UsageError("target.jump.host_key could not be read as an SSH public key line; see `bgdeploy validate`")
    keys = paramiko.HostKeys()
    keys.add(entry, parsed.key.get_name(), parsed.key)
    try:
        return SshHost.connect(
            host=jump.host,
            port=jump.port,
            user=jump.user or target.user,
            key=key,
            host_keys=keys,
            timeout=target.connect_timeout,
        )
    except BgdeployError as exc:
        # The same words as for the GPU server, but naming the jump host's own settings.
        message = str(exc).replace("target.host_key", "target.jump.host_key").replace("target.user", "target.jump.user")
        raise type(exc)(f"jump host {jump.host}:{jump.port}: {message}") from exc
