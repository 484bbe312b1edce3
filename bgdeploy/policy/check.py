"""`bgdeploy policy check`: a spec against a policy file on this machine, without contacting the host."""

from __future__ import annotations

from pathlib import Path

from bgdeploy.errors import UsageError
from bgdeploy.policy.errors import PolicyViolation
from bgdeploy.policy.evaluate import evaluate
from bgdeploy.policy.load import parse_policy_bytes
from bgdeploy.spec.load import load_spec


def check_offline(spec_path: str, policy_path: str) -> str:
    """The verdict line when the spec is allowed; raises PolicyViolation listing every violation otherwise."""
    loaded = load_spec(spec_path)
    try:
        raw = Path(policy_path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{policy_path}: cannot read the policy file ({exc.strerror}); check the path") from None
    policy = parse_policy_bytes(raw, policy_path)
    problems = evaluate(loaded.spec, loaded.located, policy.policy, policy_path)
    if problems:
        raise PolicyViolation(spec_path, problems, policy_path)
    return (
        f"{spec_path}: allowed by the policy {policy_path} (checked offline: bind sources are not resolved through "
        "symlinks and the file's ownership is not checked; the host does both before any change)"
    )
