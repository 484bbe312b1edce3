"""What a GitHub Deployment records about a release, so a pull request can be planned without the host. Pure.

Every deploy's Deployment carries, in its payload, the release it makes live (model, image, colour, GPUs,
memory fraction, spec hash) and the GPU facts seen at its preflight (per GPU: total, used, free, and the
memory this deployment's colours held then). The newest Deployment of the environment whose latest status is
`success` is the live release as far as GitHub knows; `Record.from_payload` reads it back, refusing anything
that is not a record of this deployment name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bgdeploy.plan.names import COLOURS
from bgdeploy.plan.state import Release
from bgdeploy.untrusted.secrets import mask_data

RECORD_VERSION = 1


@dataclass(frozen=True)
class GpuFact:
    """One GPU at preflight, MiB. `bgdeploy_mib`: what this deployment's colours held on it then (estimated
    from their --gpu-memory-utilization, which vLLM allocates up front)."""

    index: int
    name: str
    total_mib: int
    used_mib: int
    free_mib: int
    bgdeploy_mib: int = 0

    @property
    def usable_mib(self) -> int:
        return self.used_mib + self.free_mib

    @classmethod
    def from_json(cls, data: Any) -> GpuFact | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                index=int(data["index"]),
                name=str(data.get("name", "")),
                total_mib=int(data["total_mib"]),
                used_mib=int(data["used_mib"]),
                free_mib=int(data["free_mib"]),
                bgdeploy_mib=int(data.get("bgdeploy_mib", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Record:
    """The release a deployment made live, and the GPU facts at its preflight."""

    name: str
    release: Release
    recorded_at: str
    gpus: tuple[GpuFact, ...] = field(default=())

    def payload(self) -> dict[str, Any]:
        """The Deployment payload (masked: nothing secret is meant to be here, and nothing secret can be)."""
        release = asdict(self.release)
        masked: dict[str, Any] = mask_data(
            {
                "bgdeploy": RECORD_VERSION,
                "name": self.name,
                # Flat copies for people reading the Deployments page and older readers.
                "model": self.release.model,
                "image": self.release.image,
                "colour": self.release.colour,
                "release": release,
                "recorded_at": self.recorded_at,
                "gpu_facts": [asdict(g) for g in self.gpus],
            }
        )
        return masked

    @classmethod
    def from_payload(cls, payload: Any, name: str) -> Record | None:
        if not isinstance(payload, dict) or payload.get("bgdeploy") != RECORD_VERSION or payload.get("name") != name:
            return None
        release = Release.from_json(payload.get("release"))
        if release is None or release.colour not in COLOURS:
            return None
        raw = payload.get("gpu_facts")
        facts: list[Any] = raw if isinstance(raw, list) else []
        gpus = tuple(g for g in (GpuFact.from_json(f) for f in facts) if g is not None)
        return cls(name=name, release=release, recorded_at=str(payload.get("recorded_at", "")), gpus=gpus)
