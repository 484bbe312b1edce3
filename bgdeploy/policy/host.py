"""The policy on the host, read over the connection the command already holds (SSH, or this machine).

The path is never taken from the spec (a pull request edits the spec): it is /etc/bgdeploy/policy.yaml, or
BGDEPLOY_POLICY from the environment of the runner, which the workflow or the host's admin sets.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping

from bgdeploy.errors import TransportError
from bgdeploy.policy.access import STAT_FORMAT, parse_stat, paths_to_check, write_risks
from bgdeploy.policy.errors import PolicyUnsafe, PolicyViolation
from bgdeploy.policy.evaluate import NO_POLICY_WARNING, PolicyVerdict, evaluate
from bgdeploy.policy.load import LoadedPolicy, parse_policy_bytes
from bgdeploy.spec.load import LoadedSpec
from bgdeploy.transports.base import Host

DEFAULT_POLICY_PATH = "/etc/bgdeploy/policy.yaml"
POLICY_ENV = "BGDEPLOY_POLICY"
REQUIRE_ENV = "BGDEPLOY_REQUIRE_POLICY"

_FIX_OWNERSHIP = (
    "as root on the host: `chown root:root FILE && chmod 644 FILE`, and make every directory above it owned by "
    "root and not writable by the deploy user (chmod 755)"
)


def policy_path(environ: Mapping[str, str]) -> str:
    path = environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH
    if not path.startswith("/") or posixpath.normpath(path) != path:
        raise PolicyUnsafe(
            f"{POLICY_ENV}={path!r}: the policy path must be absolute and normalised, e.g. {DEFAULT_POLICY_PATH}"
        )
    return path


def _run(host: Host, argv: list[str], what: str) -> str:
    done = host.run(argv, timeout=30)
    if not done.ok:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.exit_code}"]
        raise PolicyUnsafe(f"cannot {what} on {host.description}: {detail[0]}; the policy cannot be trusted")
    return done.stdout


def check_ownership(host: Host, path: str) -> None:
    """Refuse a policy that the user bgdeploy connects as could change."""
    real = _run(host, ["realpath", "-e", "--", path], f"resolve {path}").strip() or path
    uid = int(_run(host, ["id", "-u"], "read the deploy user's id").strip())
    gids = {int(g) for g in _run(host, ["id", "-G"], "read the deploy user's groups").split()}
    listing = _run(host, ["stat", "-c", STAT_FORMAT, "--", *paths_to_check(path, real)], f"stat {path}")
    risks = write_risks(path, real, parse_stat(listing), uid, gids)
    if risks:
        raise PolicyUnsafe(
            f"the host policy {path} on {host.description} is refused because the deploy user could change it: "
            + "; ".join(risks)
            + f". Fix: {_FIX_OWNERSHIP.replace('FILE', path)}. Nothing was changed."
        )


def read_policy(host: Host, path: str) -> LoadedPolicy | None:
    """The policy file, checked for ownership and validity; None when there is none."""
    try:
        raw = host.read_file(path)
    except TransportError as exc:
        raise PolicyUnsafe(
            f"the host policy {path} exists but cannot be read by the deploy user ({exc}); make it readable "
            f"(chmod 644 {path}) or remove it"
        ) from None
    if raw is None:
        return None
    check_ownership(host, path)
    return parse_policy_bytes(raw, path)


def resolve_sources(host: Host, loaded: LoadedSpec) -> dict[str, str]:
    """Each absolute bind source of the spec → its real path on the host (symlinks followed)."""
    sources = sorted({v.split(":")[0] for v in loaded.spec.runtime.volumes if v.startswith("/")})
    if not sources:
        return {}
    lines = _run(host, ["realpath", "-m", "--", *sources], "resolve the bind sources").splitlines()
    if len(lines) != len(sources):
        raise PolicyUnsafe(f"cannot resolve the bind sources on {host.description}: unexpected `realpath` output")
    return dict(zip(sources, lines, strict=True))


def check_policy(host: Host, loaded: LoadedSpec, environ: Mapping[str, str]) -> PolicyVerdict:
    """The verdict of the host's policy on this spec (raises when the policy itself is unusable)."""
    path = policy_path(environ)
    policy = read_policy(host, path)
    if policy is None:
        if environ.get(REQUIRE_ENV, "").lower() in ("1", "true", "yes"):
            raise PolicyUnsafe(
                f"{REQUIRE_ENV} is set but {host.description} has no host policy at {path}; the host's admin must "
                "write one (README: Host policy). Nothing was changed."
            )
        return PolicyVerdict(path, found=False)
    problems = evaluate(loaded.spec, loaded.located, policy.policy, path, resolve_sources(host, loaded))
    return PolicyVerdict(path, found=True, problems=problems)


def enforce_policy(verdict: PolicyVerdict, loaded: LoadedSpec, warn: Callable[[str], None]) -> None:
    """Before any change: refuse a spec that breaks the host policy, with every violation located."""
    if not verdict.found:
        warn(NO_POLICY_WARNING.format(path=verdict.path))
    elif verdict.problems:
        raise PolicyViolation(loaded.path, verdict.problems, verdict.path)
