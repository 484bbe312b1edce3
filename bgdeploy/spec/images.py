"""Docker image references: the grammar the spec accepts, and what a reference is made of. Pure.

The grammar is Docker's own (distribution/reference): `[DOMAIN[:PORT]/]PATH[:TAG][@sha256:HEX]`, or a
local image ID `sha256:HEX`. A reference pinned by digest names content, not a movable tag: it is pulled as
`REPO@sha256:...` (never as the tag `sha256`) and an image on the host matches it only when the host says
that image has this digest (or this ID).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?/)"
)
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST = r"sha256:[a-f0-9]{64}"
IMAGE_PATTERN = rf"^(?:{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{DIGEST})?|{DIGEST})$"
IMAGE_HINT = (
    "must be an image reference such as vllm/vllm-openai:v0.9.2, registry.example:5000/llm/server@sha256:<64 hex>"
    " or a local image ID sha256:<64 hex> (lowercase repository, no spaces)"
)

_IMAGE_RE = re.compile(IMAGE_PATTERN)
_DIGEST_RE = re.compile(rf"^{DIGEST}$")
DEFAULT_DOMAIN = "docker.io"


@dataclass(frozen=True)
class ImageRef:
    """One image reference, split. `repository` is empty for a bare image ID."""

    text: str
    repository: str
    tag: str | None
    digest: str | None  # "sha256:..." for REPO@sha256:... and for a bare image ID

    @property
    def is_id(self) -> bool:
        """A local image ID (`sha256:...` alone): nothing to pull, it names one image on one host."""
        return not self.repository

    @property
    def pinned(self) -> bool:
        """The reference names content (a digest or an image ID), not a tag that can move."""
        return self.digest is not None

    @property
    def familiar(self) -> str:
        """The reference as `docker` shows it: without `docker.io/` and `library/`, `:latest` when untagged."""
        if self.is_id:
            return self.text
        repo = self.repository
        if repo.startswith(DEFAULT_DOMAIN + "/"):
            repo = repo[len(DEFAULT_DOMAIN) + 1 :]
            if repo.startswith("library/") and repo.count("/") == 1:
                repo = repo[len("library/") :]
        text = repo
        if self.tag is not None or self.digest is None:
            text += f":{self.tag or 'latest'}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def pull_args(self) -> tuple[str, str]:
        """(repository, tag) for docker-py's `images.pull`: a digest goes where the tag goes, as Docker wants."""
        if self.is_id:
            raise ValueError(f"{self.text} is a local image ID: it cannot be pulled")
        return self.repository, self.digest or self.tag or "latest"


def is_image_ref(text: str) -> bool:
    return bool(_IMAGE_RE.match(text))


def parse_image(text: str) -> ImageRef:
    """Split a reference that matches IMAGE_PATTERN (a ValueError otherwise)."""
    if not _IMAGE_RE.match(text):
        raise ValueError(f"{text!r} is not an image reference")
    if _DIGEST_RE.match(text):
        return ImageRef(text, "", None, text)
    rest, _, digest = text.partition("@")
    last = rest.rsplit("/", 1)[-1]
    tag: str | None = None
    if ":" in last:  # a ':' before the last '/' is a registry port, not a tag
        rest, _, tag = rest.rpartition(":")
    return ImageRef(text, rest, tag, digest or None)


def digest_matches(ref: ImageRef, image_id: str, repo_digests: list[str]) -> bool:
    """Whether a local image (its ID and RepoDigests, as `docker inspect` gives them) is the one `ref` pins.

    A reference without a digest matches whatever image its tag names now.
    """
    if ref.digest is None:
        return True
    if image_id == ref.digest:
        return True
    return any(entry.rpartition("@")[2] == ref.digest for entry in repo_digests)
