"""The one registry of secret values of this process, and the one function that masks them.

Whatever learns a secret registers it (the SSH key, the GitHub token, each `runtime.secret_env` value, the
API key); every output masks with `mask`: stdout and stderr (the CLI wraps both streams), reports, PR
comments, GitHub Deployment payloads, `--json`, `state.json`, `history.jsonl`, exception messages and container
log lines. Registering is idempotent; a value shorter than MIN_LENGTH is not masked (it would mangle ordinary
words), which is why secrets that short are refused where they are read.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

MIN_LENGTH = 4
# Lines of a multi-line secret (a PEM key) are masked one by one from this length on: a key's body lines are
# 64 characters, its "-----BEGIN ... KEY-----" frame is not secret but harmless to mask.
LINE_MIN_LENGTH = 16
MASK = "***"
# The names under which the action and the CLI receive secrets (masked as soon as the process starts).
SECRET_VARIABLES = (
    "BGDEPLOY_SSH_KEY",
    "BGDEPLOY_SSH_KEY_PASSPHRASE",
    "BGDEPLOY_GITHUB_TOKEN",
    "GITHUB_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)

_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()


def register(value: str | None) -> None:
    """Mask `value` (and, for a multi-line value, each long line of it) from now on."""
    if not value:
        return
    candidates = {value, value.strip()}
    if "\n" in value.strip():
        candidates |= {line.strip() for line in value.splitlines() if len(line.strip()) >= LINE_MIN_LENGTH}
    global _ordered
    with _lock:
        added = {c for c in candidates if len(c) >= MIN_LENGTH} - _values
        if not added:
            return
        _values.update(added)
        # Longest first: a key's whole text is replaced before its lines are.
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def register_env(environ: Mapping[str, str], names: Iterable[str] = SECRET_VARIABLES) -> None:
    for name in names:
        register(environ.get(name))


def known() -> tuple[str, ...]:
    return _ordered


def forget_all() -> None:
    """For tests only: an empty registry."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()


def mask(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_data(data: Any) -> Any:
    """A JSON-like value with every string in it masked (keys included)."""
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, Mapping):
        return {mask(str(k)): mask_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_data(v) for v in data]
    return data


def mask_json(text: str) -> str:
    """Serialised JSON masked: secrets as they appear raw, and as JSON escapes them (a key's newlines)."""
    text = mask(text)
    for secret in _ordered:
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret and escaped in text:
            text = text.replace(escaped, MASK)
    return text


class MaskingStream(io.TextIOBase):
    """A text stream that masks secrets and passes each complete line through `transform` before writing it
    to `target`. Lines are buffered until their newline so a secret or a `::` split over writes is still seen."""

    def __init__(self, target: TextIO, transform: Any = None) -> None:
        super().__init__()
        self.target = target
        self.transform = transform
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            if "\n" in self._buffer:
                complete, self._buffer = self._buffer.rsplit("\n", 1)
                self.target.write(self._render(complete) + "\n")
        return len(text)

    def _render(self, text: str) -> str:
        text = mask(text)
        if self.transform is not None:
            text = "\n".join(self.transform(line) for line in text.split("\n"))
        return text

    def flush(self) -> None:
        with self._lock:
            if self._buffer:
                self.target.write(self._render(self._buffer))
                self._buffer = ""
            self.target.flush()

    def raw_write(self, line: str) -> None:
        """A line of our own (a workflow command such as ::add-mask::), written unmasked and unchanged."""
        with self._lock:
            if self._buffer:
                self.target.write(self._render(self._buffer) + "\n")
                self._buffer = ""
            self.target.write(line + "\n")
            self.target.flush()

    def fileno(self) -> int:
        return self.target.fileno()

    def isatty(self) -> bool:
        return self.target.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")
