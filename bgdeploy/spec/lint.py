"""Warnings about a valid spec that will probably not do what its author wants (`validate` and `plan` print
them; they never fail a command). Pure: the spec and its YAML positions in, located warnings out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bgdeploy.spec.models import Spec
from bgdeploy.spec.yaml_source import Located, Path

# Hugging Face organisations whose models are mostly gated (a licence to accept, then a token to download).
GATED_ORGS = ("meta-llama/", "mistralai/", "google/gemma", "google/medgemma", "CohereForAI/", "CohereLabs/")
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
HF_CACHE = "/root/.cache/huggingface"  # where the vLLM image keeps downloaded weights (HF_HOME)


@dataclass(frozen=True)
class LintWarning:
    path: str
    message: str
    line: int
    column: int

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}:{self.column}: warning: {self.path}: {self.message}"


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def lint(spec: Spec, located: Located) -> list[LintWarning]:
    def at(path: Path, message: str) -> LintWarning:
        line, column = located.locate(path, key=True)
        return LintWarning(_dotted(path), message, line, column)

    return sorted((at(path, message) for path, message in _checks(spec)), key=lambda w: (w.line, w.column))


def tensor_parallel_size(args: list[str]) -> int | None:
    """--tensor-parallel-size N (or =N, -tp N) in vLLM's arguments."""
    for i, arg in enumerate(args):
        for flag in ("--tensor-parallel-size", "-tp"):
            value = None
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            if value is not None and value.isdigit():
                return int(value)
    return None


def _checks(spec: Spec) -> Iterator[tuple[Path, str]]:
    prompts = spec.validation.prompts
    if not prompts:
        yield (
            ("validation",),
            "no validation prompts: only the health path decides whether the new model takes traffic, so a model "
            "that loads but answers wrongly goes live; add at least one prompt with an `expect`",
        )
    elif not spec.rollout.smoke:
        yield (
            ("rollout",),
            "no rollout.smoke: nothing is asked through the router after the switch; list a prompt name there "
            f"(e.g. smoke: [{prompts[0].name}])",
        )
    runtime = spec.runtime
    if runtime.command is None:
        tp = tensor_parallel_size(runtime.args)
        for colour, gpus in (("blue", spec.gpus.blue), ("green", spec.gpus.green)):
            if tp is not None and gpus and tp != len(gpus):
                yield (
                    ("runtime", "args"),
                    f"--tensor-parallel-size {tp} but gpus.{colour} gives {len(gpus)} GPU(s): vLLM needs one GPU per "
                    f"tensor-parallel rank; give {colour} {tp} GPUs or set --tensor-parallel-size {len(gpus)}",
                )
                break
            if tp is None and len(gpus) > 1:
                yield (
                    ("runtime", "args"),
                    f"gpus.{colour} gives {len(gpus)} GPUs but runtime.args has no --tensor-parallel-size: vLLM "
                    f"uses one GPU and the others sit idle; add [--tensor-parallel-size, '{len(gpus)}']",
                )
                break
    model = spec.model.name
    from_hub = "/" in model and not model.startswith(("/", "."))
    given = set(runtime.secret_env) | set(runtime.env)
    if model.startswith(GATED_ORGS) and not given & set(TOKEN_VARIABLES):
        yield (
            ("model", "name"),
            f"{model} looks gated on Hugging Face, and no token reaches the server: accept its licence, store a "
            "token as a secret and add runtime.secret_env: [HF_TOKEN]",
        )
    cache = str(runtime.env.get("HF_HOME") or HF_CACHE).rstrip("/")
    paths = [p for p in (_container_path(v) for v in runtime.volumes) if p]
    mounted = any(cache == p or cache.startswith(p + "/") for p in paths)
    if from_hub and runtime.command is None and not mounted:
        yield (
            ("runtime", "volumes"),
            f"no Hugging Face cache is mounted: every new colour downloads {model} again; add "
            f"runtime.volumes: [/srv/hf-cache:{cache}] (a host directory kept between deploys)",
        )


def _container_path(volume: str) -> str:
    parts = volume.split(":")
    return parts[1].rstrip("/") if len(parts) >= 2 else ""
