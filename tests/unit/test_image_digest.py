"""Images by digest through the Docker engine wrapper, with a fake docker-py client: pulled by digest (never
as the tag `sha256`), present only with that digest, and a local image ID never pulled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from docker.errors import ImageNotFound

from bgdeploy.errors import TransportError
from bgdeploy.transports.docker_engine import DockerEngine

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@dataclass
class _Image:
    attrs: dict[str, Any]


@dataclass
class _Images:
    local: dict[str, _Image] = field(default_factory=dict)
    pulled: list[tuple[str, str | None]] = field(default_factory=list)
    after_pull: dict[str, _Image] = field(default_factory=dict)

    def get(self, name: str) -> _Image:
        if name not in self.local:
            raise ImageNotFound(f"no such image: {name}")
        return self.local[name]

    def pull(self, repository: str, tag: str | None = None) -> None:
        self.pulled.append((repository, tag))
        self.local.update(self.after_pull)


@dataclass
class _Client:
    images: _Images


def engine(images: _Images) -> DockerEngine:
    client: Any = _Client(images)
    return DockerEngine(client)


def test_a_digest_reference_is_pulled_by_digest_and_checked() -> None:
    image = f"vllm/vllm-openai@{DIGEST}"
    pinned = _Image({"Id": OTHER, "RepoDigests": [image]})
    images = _Images(after_pull={image: pinned})
    engine(images).pull(image)
    assert images.pulled == [("vllm/vllm-openai", DIGEST)]
    registry = f"registry.example:5000/llm/server:v2@{DIGEST}"
    images = _Images(
        after_pull={registry: _Image({"Id": OTHER, "RepoDigests": [f"registry.example:5000/llm/server@{DIGEST}"]})}
    )
    engine(images).pull(registry)
    assert images.pulled == [("registry.example:5000/llm/server", DIGEST)]
    tagged = _Images(after_pull={"vllm/vllm-openai:v0.9.2": _Image({"Id": OTHER})})
    engine(tagged).pull("vllm/vllm-openai:v0.9.2")
    assert tagged.pulled == [("vllm/vllm-openai", "v0.9.2")]


def test_a_pulled_image_without_the_digest_is_refused() -> None:
    image = f"vllm/vllm-openai@{DIGEST}"
    wrong = _Images(after_pull={image: _Image({"Id": OTHER, "RepoDigests": ["vllm/vllm-openai@" + OTHER]})})
    with pytest.raises(TransportError, match="does not carry the digest"):
        engine(wrong).pull(image)


def test_presence_is_judged_by_digest_or_id_and_an_id_is_never_pulled() -> None:
    image = f"vllm/vllm-openai@{DIGEST}"
    images = _Images(
        local={
            image: _Image({"Id": OTHER, "RepoDigests": [image]}),
            DIGEST: _Image({"Id": DIGEST, "RepoDigests": []}),
            "nginx:1.27": _Image({"Id": OTHER}),
        }
    )
    assert engine(images).image_present(image)
    assert engine(images).image_present(DIGEST)
    assert engine(images).image_present("nginx:1.27")
    images.local[image] = _Image({"Id": OTHER, "RepoDigests": ["vllm/vllm-openai@" + OTHER]})
    assert not engine(images).image_present(image)
    with pytest.raises(TransportError, match="a local image ID cannot be pulled"):
        engine(_Images()).pull(OTHER)
    assert not engine(_Images()).image_present(OTHER)
