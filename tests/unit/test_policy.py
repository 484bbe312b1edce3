"""The host policy, judged offline: hostile specs are refused with every violation located; the policy file
has its own schema and located errors; the ownership rule from `stat` output; image references by digest."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from bgdeploy.cli import main
from bgdeploy.errors import SpecError
from bgdeploy.policy.access import Entry, parse_stat, paths_to_check, write_risks
from bgdeploy.policy.errors import PolicyFileError
from bgdeploy.policy.evaluate import evaluate
from bgdeploy.policy.globs import glob_match
from bgdeploy.policy.load import parse_policy_bytes
from bgdeploy.policy.models import Policy
from bgdeploy.policy.schema import policy_schema_text
from bgdeploy.spec.images import digest_matches, is_image_ref, parse_image
from tests.unit.conftest import HOST_KEY, MINIMAL, load, problems

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32
POLICY = """\
version: 1
images: ["vllm/vllm-openai:*", "registry.internal/llm/*@sha256:*"]
names: ["chat", "chat-*"]
volumes: [{host: /srv/hf-cache, mode: rw}, {host: /srv/models, mode: ro}]
env_deny: [LD_*, PYTHONPATH]
gpus: [0, 1, 2, 3]
max_gpu_memory_utilization: 0.95
shm_size_max: 32g
command_override: false
router: {listen: [80, 8080], modes: [container], config_paths: [], images: ["nginx:*"]}
"""

HOSTILE = f"""\
version: 1
name: pwn
target: {{host: gpu-1.example.com, host_key: "{HOST_KEY}"}}
model: {{name: acme/chat}}
runtime:
  image: attacker.example/rootkit
  volumes: ["/:/host", "/var/run/docker.sock:/var/run/docker.sock", "/srv/models/../../etc:/x:ro"]
  env: {{LD_PRELOAD: /host/evil.so, OK: "1"}}
  command: [sh, -c, id]
  gpu_memory_utilization: 0.45
  shm_size: 64g
gpus: {{blue: [0, 1, 2, 3, 4, 5, 6, 7], green: [0, 1, 2, 3, 4, 5, 6, 7]}}
router: {{mode: host, config_path: /etc/resolv.conf.conf, listen: 53}}
"""


def policy(text: str = POLICY) -> Policy:
    return parse_policy_bytes(text.encode(), "policy.yaml").policy


def violations(spec_text: str, policy_text: str = POLICY, resolved: dict[str, str] | None = None) -> list[str]:
    loaded = load(spec_text)
    found = evaluate(loaded.spec, loaded.located, policy(policy_text), "/etc/bgdeploy/policy.yaml", resolved)
    return [p.render("bluegreen.yaml") for p in found]


def test_a_hostile_spec_is_refused_with_every_violation_located() -> None:
    found = violations(HOSTILE)
    joined = "\n".join(found)
    expected = [
        "bluegreen.yaml:2:7: name: the deployment name 'pwn' is not allowed",
        "bluegreen.yaml:6:10: runtime.image: the image attacker.example/rootkit is not allowed",
        "bluegreen.yaml:7:13: runtime.volumes[0]: mounting / is not allowed on this host (it exposes the host's "
        "whole file system)",
        "bluegreen.yaml:7:24: runtime.volumes[1]: mounting /var/run/docker.sock is not allowed",
        "bluegreen.yaml:7:69: runtime.volumes[2]: the bind source /srv/models/../../etc is not a plain",
        "bluegreen.yaml:8:9: runtime.env.LD_PRELOAD: setting LD_PRELOAD is denied",
        "bluegreen.yaml:9:3: runtime.command: replacing the server's command line is not allowed",
        "bluegreen.yaml:11:13: runtime.shm_size: 64g is above this host's shm_size_max 32g",
        "bluegreen.yaml:12:8: gpus.blue: GPU 4, 5, 6, 7 may not be used",
        "bluegreen.yaml:12:40: gpus.green: GPU 4, 5, 6, 7 may not be used",
        "bluegreen.yaml:13:16: router.mode: router mode host is not allowed",
        "bluegreen.yaml:13:35: router.config_path: /etc/resolv.conf.conf may not be written",
        "bluegreen.yaml:13:66: router.listen: port 53 is not allowed",
    ]
    assert len(found) == len(expected), joined
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert "/etc/bgdeploy/policy.yaml" in joined  # each says where the rule comes from


def test_an_allowed_spec_has_no_violation_and_the_example_policy_admits_the_examples() -> None:
    assert violations(MINIMAL + "router: {image: 'nginx:1.27'}\n") == []
    example = parse_policy_bytes(
        (REPO / "examples" / "host-policy" / "policy.yaml").read_bytes(), "examples/host-policy/policy.yaml"
    ).policy
    for name in ("single-gpu.yaml", "multi-gpu.yaml"):
        loaded = load((REPO / "examples" / name).read_text())
        assert evaluate(loaded.spec, loaded.located, example, "p") == [], name


def test_images_by_digest_can_be_required_and_globs_match_them() -> None:
    strict = POLICY.replace("version: 1\n", "version: 1\nrequire_digest: true\n")
    tagged = MINIMAL.replace("vllm/vllm-openai:v0.9.2", "registry.internal/llm/server:v2")
    found = violations(tagged + "router: {image: 'nginx:1.27'}\n", strict)
    assert any("runtime.image: the image registry.internal/llm/server:v2 is not allowed" in f for f in found)
    assert any("requires images pinned by digest" in f and "registry.internal/llm/server@sha256:" in f for f in found)
    assert any(f.startswith("bluegreen.yaml:1:1: router.image") or "router.image" in f for f in found)
    pinned = MINIMAL.replace("vllm/vllm-openai:v0.9.2", f"registry.internal/llm/server@{DIGEST}")
    router = f"router: {{image: 'nginx@{DIGEST}'}}\n"
    strict = strict.replace('images: ["nginx:*"]', 'images: ["nginx:*", "nginx@sha256:*"]')
    assert violations(pinned + router, strict) == []
    # A local image ID is pinned too; it must still match an allowed pattern.
    by_id = MINIMAL.replace("vllm/vllm-openai:v0.9.2", DIGEST)
    assert violations(by_id + router, strict.replace('images: ["', f'images: ["{DIGEST}", "')) == []
    # docker.io/ and library/ are spelled either way.
    full = MINIMAL.replace("vllm/vllm-openai:v0.9.2", "docker.io/vllm/vllm-openai:v0.9.2")
    assert violations(full + "router: {image: 'docker.io/library/nginx:1.27'}\n") == []


def test_globs_stay_within_one_path_part_unless_doubled() -> None:
    assert glob_match("vllm/vllm-openai:*", "vllm/vllm-openai:v0.9.2")
    assert not glob_match("registry.internal/*", "registry.internal/llm/x")
    assert glob_match("registry.internal/**", "registry.internal/llm/x")
    assert glob_match("chat-*", "chat-eu") and not glob_match("chat-*", "chatty")
    assert glob_match("LD_*", "LD_PRELOAD") and glob_match("[!X]Y", "AY") and not glob_match("[!X]Y", "XY")


def test_volumes_allow_prefixes_modes_and_follow_symlinks_on_the_host() -> None:
    base = MINIMAL + "router: {image: 'nginx:1.27'}\n"
    ok = base.replace(
        "  image: vllm", '  volumes: ["/srv/hf-cache/hub:/root/.cache", "/srv/models:/models:ro"]\n  image: vllm'
    )
    assert violations(ok) == []
    rw = base.replace("  image: vllm", '  volumes: ["/srv/models/x:/models"]\n  image: vllm')
    assert "may only be mounted read-only" in violations(rw)[0] and "/srv/models/x:/models:ro" in violations(rw)[0]
    sibling = base.replace("  image: vllm", '  volumes: ["/srv/models-evil:/m:ro"]\n  image: vllm')
    assert "mounting /srv/models-evil is not allowed" in violations(sibling)[0]
    linked = base.replace("  image: vllm", '  volumes: ["/srv/hf-cache/escape:/host"]\n  image: vllm')
    found = violations(linked, resolved={"/srv/hf-cache/escape": "/"})
    assert len(found) == 1 and "resolves to / on the host (a symlink)" in found[0]
    named = base.replace("  image: vllm", '  volumes: ["hf:/root/.cache"]\n  image: vllm')
    assert "mounting hf is not allowed" in violations(named)[0]
    assert violations(named, POLICY.replace("{host: /srv/models, mode: ro}", "{host: hf, mode: rw}")) == []


def test_secret_env_gpu_memory_and_bind_rules() -> None:
    base = MINIMAL + "router: {image: 'nginx:1.27', bind: 10.0.0.1}\n"
    text = base.replace("  image: vllm", "  secret_env: [PYTHONPATH]\n  gpu_memory_utilization: 0.45\n  image: vllm")
    strict = POLICY.replace("max_gpu_memory_utilization: 0.95", "max_gpu_memory_utilization: 0.4").replace(
        "config_paths: []", "config_paths: [], binds: [127.0.0.1]"
    )
    found = "\n".join(violations(text, strict))
    assert "runtime.secret_env[0]: setting PYTHONPATH is denied" in found
    assert "0.45 is above this host's max_gpu_memory_utilization 0.4" in found
    assert "router.bind: address 10.0.0.1 is not allowed" in found


def test_server_arguments_can_be_denied() -> None:
    text = MINIMAL + "router: {image: 'nginx:1.27'}\n"
    text = text.replace("  image: vllm", "  args: [--enforce-eager, --trust-remote-code=true]\n  image: vllm")
    found = violations(text)
    assert len(found) == 1 and "runtime.args[1]: the server argument '--trust-remote-code=true' is denied" in found[0]
    assert violations(text, POLICY + "args_deny: []\n") == []


def test_host_mode_config_paths_must_match_and_be_normal() -> None:
    spec = MINIMAL + "router: {mode: host, config_path: /etc/nginx/conf.d/../../resolv.conf}\n"
    allow = POLICY.replace(
        "modes: [container], config_paths: []", "modes: [host], config_paths: ['/etc/nginx/conf.d/*.conf']"
    )
    assert "router.config_path" in violations(spec, allow)[0]
    assert violations(spec.replace("../../resolv.conf", "chat.conf"), allow) == []


def test_a_policy_file_error_is_located_in_the_policy_file() -> None:
    bad = "version: 1\nimages: vllm/*\nvolumes: [{host: /srv, mode: rx}]\nrequire_digets: true\n"
    with pytest.raises(PolicyFileError) as caught:
        parse_policy_bytes(bad.encode(), "/etc/bgdeploy/policy.yaml")
    rendered = caught.value.render()
    assert "/etc/bgdeploy/policy.yaml:2:9: images: expected a list" in rendered
    assert "/etc/bgdeploy/policy.yaml:3:30: volumes[0].mode: must be one of ro, rw" in rendered
    assert (
        "/etc/bgdeploy/policy.yaml:4:1: require_digets: unknown key 'require_digets'; "
        "did you mean 'require_digest'?" in rendered
    )
    assert "the host's admin must fix it" in str(caught.value)
    with pytest.raises(PolicyFileError) as hinted:
        parse_policy_bytes(b"version: 1\nimages: ['a b']\nenv_deny: ['LD PRELOAD']\nshm_size_max: lots\n", "p")
    assert hinted.value.render().splitlines() == [
        "p:2:10: images[0]: must be a glob pattern without spaces (at most 512 characters), e.g. "
        "vllm/vllm-openai:*, got 'a b'",
        "p:3:12: env_deny[0]: must be an environment variable name or a glob of names, e.g. LD_*, got 'LD PRELOAD'",
        "p:4:15: shm_size_max: must be a size such as 32g, 512m or a number of bytes, got 'lots'",
    ]
    with pytest.raises(PolicyFileError, match="invalid"):
        parse_policy_bytes(b"version: 1\n", "p")  # images is required: no default allows every image


def test_committed_policy_schema_has_not_drifted() -> None:
    assert (REPO / "schema" / "policy.schema.json").read_text() == policy_schema_text()
    assert json.loads(policy_schema_text())["required"] == ["version", "images"]


def _entry(path: str, uid: int, gid: int, mode: int, kind: int = stat.S_IFDIR) -> str:
    return f"{uid} {gid} {kind | mode:x} {path}"


def _stat(file_uid: int = 0, file_mode: int = 0o644, dir_mode: int = 0o755, etc_gid: int = 0) -> dict[str, Entry]:
    return parse_stat(
        "\n".join(
            [
                _entry("/etc/bgdeploy/policy.yaml", file_uid, 0, file_mode, stat.S_IFREG),
                _entry("/etc/bgdeploy", 0, 0, dir_mode),
                _entry("/etc", 0, etc_gid, 0o775),
                _entry("/", 0, 0, 0o755),
            ]
        )
    )


def test_a_policy_the_deploy_user_can_change_is_refused() -> None:
    path = "/etc/bgdeploy/policy.yaml"
    assert paths_to_check(path, path) == [path, "/etc/bgdeploy", "/etc", "/"]
    assert write_risks(path, path, _stat(), 1000, {1000, 999}) == []
    assert (
        "can write /etc/bgdeploy/policy.yaml"
        in write_risks(path, path, _stat(file_uid=1000, file_mode=0o444), 1000, {1000})[0]
    )
    assert write_risks(path, path, _stat(file_mode=0o664), 1000, {0})  # group root, group-writable
    assert write_risks(path, path, _stat(file_mode=0o646), 1000, {1000})  # world-writable
    assert "replace entries in /etc/bgdeploy" in write_risks(path, path, _stat(dir_mode=0o777), 1000, {1000})[0]
    assert "replace entries in /etc " in write_risks(path, path, _stat(etc_gid=999), 1000, {999})[0]
    assert "root" in write_risks(path, path, _stat(), 0, {0})[0]
    # A sticky world-writable directory (like /tmp) protects entries the user does not own.
    sticky = _stat(dir_mode=0o1777)
    assert write_risks(path, path, sticky, 1000, {1000}) == []
    assert "could not stat" in write_risks(path, path, {}, 1000, set())[0]


def test_image_references_parse_and_compare_by_digest() -> None:
    ref = parse_image(f"vllm/vllm-openai@{DIGEST}")
    assert (ref.repository, ref.tag, ref.digest, ref.pinned) == ("vllm/vllm-openai", None, DIGEST, True)
    assert ref.pull_args() == ("vllm/vllm-openai", DIGEST)  # pulled by digest, never as the tag "sha256"
    port = parse_image("registry.example:5000/llm/server:v2")
    assert (port.repository, port.tag, port.pull_args()) == (
        "registry.example:5000/llm/server",
        "v2",
        (port.repository, "v2"),
    )
    assert parse_image("nginx").pull_args() == ("nginx", "latest")
    assert parse_image("docker.io/library/nginx:1.27").familiar == "nginx:1.27"
    both = parse_image(f"vllm/vllm-openai:v1@{DIGEST}")
    assert (both.tag, both.digest, both.familiar) == ("v1", DIGEST, f"vllm/vllm-openai:v1@{DIGEST}")
    local = parse_image(DIGEST)
    assert local.is_id and local.pinned
    with pytest.raises(ValueError):
        local.pull_args()
    assert digest_matches(ref, "sha256:" + "cd" * 32, [f"vllm/vllm-openai@{DIGEST}"])
    assert not digest_matches(ref, "sha256:" + "cd" * 32, ["vllm/vllm-openai@sha256:" + "ef" * 32])
    assert digest_matches(local, DIGEST, [])
    assert digest_matches(parse_image("nginx:1.27"), "sha256:x", [])
    for bad in ("Vllm/X", "a b", "repo@sha256:short", "-rf", "x:tag:tag", "repo:" + "t" * 200, "<img>"):
        assert not is_image_ref(bad), bad


@pytest.mark.parametrize(
    ("line", "value", "hint"),
    [
        ("model", '{name: "x\\n::warning title=Approved::LGTM"}', "model.name: must be a model id or path"),
        ("model", "{name: '<img src=x onerror=alert(1)>'}", "model.name: must be a model id or path"),
        ("model", "{name: '@org/team'}", "model.name: must be a model id or path"),
        ("model", "{name: '<!-- bgdeploy:chat -->'}", "model.name: must be a model id or path"),
        ("model", "{name: --trust-remote-code}", "model.name: must be a model id or path"),
        ("model", "{name: " + "a" * 300 + "}", "model.name: must be a model id or path"),
        ("model", "{name: m, served_name: '@here'}", "model.served_name: must be letters"),
        ("model", "{name: m, revision: 'main\\n##[add-mask]x'}", "model.revision: must be a branch"),
        ("report", "{environment: '<b>prod</b>'}", "report.environment: must be a GitHub environment name"),
        ("runtime", "{image: 'attacker.example/x y'}", "runtime.image: must be an image reference"),
    ],
)
def test_identifiers_have_sane_patterns_with_located_messages(line: str, value: str, hint: str) -> None:
    text = MINIMAL
    if line == "model":
        text = text.replace("model:\n  name: meta-llama/Llama-3.1-8B-Instruct\n", f"model: {value}\n")
    elif line == "runtime":
        text = text.replace("runtime:\n  image: vllm/vllm-openai:v0.9.2\n", f"runtime: {value}\n")
    else:
        text += f"{line}: {value}\n"
    found = problems(text)
    assert len(found) == 1 and hint in found[0], found
    assert found[0].startswith("bluegreen.yaml:") and found[0].split(":")[1].isdigit()


def test_policy_check_command_works_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bluegreen.yaml"
    pol = tmp_path / "policy.yaml"
    pol.write_text(POLICY)
    spec.write_text(HOSTILE)
    assert main(["policy", "check", "-f", str(spec), "--policy", str(pol)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{spec}:") >= 13 and "13 host policy violations" in err and "nothing was changed" in err
    spec.write_text(MINIMAL + "router: {image: 'nginx:1.27'}\n")
    assert main(["policy", "check", "-f", str(spec), "--policy", str(pol)]) == 0
    assert "allowed by the policy" in capsys.readouterr().out
    pol.write_text("version: 2\nimages: []\n")
    assert main(["policy", "check", "-f", str(spec), "--policy", str(pol)]) == 2
    assert f"{pol}:1:10: version: must be 1" in capsys.readouterr().err
    assert main(["policy", "check", "-f", str(spec), "--policy", str(tmp_path / "none.yaml")]) == 2
    assert main(["policy", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "bgdeploy host policy"


def test_a_policy_violation_is_a_spec_error_with_the_structured_list() -> None:
    from bgdeploy.policy.errors import PolicyViolation

    loaded = load(HOSTILE)
    found = evaluate(loaded.spec, loaded.located, policy(), "/etc/bgdeploy/policy.yaml")
    exc = PolicyViolation("bluegreen.yaml", found, "/etc/bgdeploy/policy.yaml")
    assert isinstance(exc, SpecError) and exc.exit_code == 2
    assert all(p.line > 1 for p in exc.problems)
    assert "13 host policy violations (/etc/bgdeploy/policy.yaml); nothing was changed" in str(exc)


def test_the_report_lists_every_violation_escaped() -> None:
    from bgdeploy.plan.result import Result
    from bgdeploy.policy.evaluate import PolicyVerdict
    from bgdeploy.report.markdown import render

    loaded = load(HOSTILE)
    found = evaluate(loaded.spec, loaded.located, policy(), "/etc/bgdeploy/policy.yaml")
    result = Result(command="deploy", name="pwn", policy=PolicyVerdict("/etc/bgdeploy/policy.yaml", True, found))
    text = render(result)
    assert "**Host policy**: refused by the host policy /etc/bgdeploy/policy.yaml: 13 violations" in text
    assert "| 6:10 | runtime.image | the image attacker.example/rootkit is not allowed" in text
    assert text.count("\n| ") == 13 + 2  # the header, its rule and one row per violation
    allowed = render(Result(command="plan", name="chat", policy=PolicyVerdict("/p", True, [])))
    assert "Policy: allowed by the host policy /p" in allowed


class _FakeHost:
    """Just what the policy reader uses of a host: files, and canned answers of realpath, id and stat."""

    description = "deploy@gpu-1"

    def __init__(self, files: dict[str, bytes], stat_lines: list[str], uid: int = 1000) -> None:
        self.files = files
        self.stat_lines = stat_lines
        self.uid = uid
        self.calls: list[list[str]] = []

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path)

    def run(self, argv: list[str], *, timeout: float = 60.0) -> Any:
        from bgdeploy.transports.base import CommandResult

        self.calls.append(list(argv))
        if argv[0] == "realpath":
            targets = argv[argv.index("--") + 1 :]
            out = "\n".join("/" if t == "/srv/hf-cache/escape" else t for t in targets)
        elif argv[:2] == ["id", "-u"]:
            out = str(self.uid)
        elif argv[:2] == ["id", "-G"]:
            out = f"{self.uid} 999"
        else:
            out = "\n".join(self.stat_lines)
        return CommandResult(tuple(argv), 0, out + "\n", "")


def test_the_host_reader_checks_ownership_resolves_symlinks_and_honours_the_env() -> None:
    from bgdeploy.policy.errors import PolicyUnsafe
    from bgdeploy.policy.host import DEFAULT_POLICY_PATH, check_policy, enforce_policy

    path = DEFAULT_POLICY_PATH
    good = [
        _entry(path, 0, 0, 0o644, stat.S_IFREG),
        _entry("/etc/bgdeploy", 0, 0, 0o755),
        _entry("/etc", 0, 0, 0o755),
        _entry("/", 0, 0, 0o755),
    ]
    spec = MINIMAL + "router: {image: 'nginx:1.27'}\n"
    linked = load(spec.replace("  image: vllm", '  volumes: ["/srv/hf-cache/escape:/host"]\n  image: vllm'))
    host: Any = _FakeHost({path: POLICY.encode()}, good)
    verdict = check_policy(host, linked, {})
    assert verdict.found and len(verdict.problems) == 1
    assert "resolves to / on the host (a symlink)" in verdict.problems[0].message
    with pytest.raises(SpecError, match="1 host policy violation"):
        enforce_policy(verdict, linked, lambda _: None)

    group_writable = [_entry(path, 0, 999, 0o664, stat.S_IFREG), *good[1:]]  # group 999: the deploy user's
    writable: Any = _FakeHost({path: POLICY.encode()}, group_writable)
    with pytest.raises(PolicyUnsafe, match="deploy user could change it: the deploy user can write"):
        check_policy(writable, load(spec), {})

    warnings: list[str] = []
    missing = check_policy(_FakeHost({}, good), load(spec), {"BGDEPLOY_POLICY": "/srv/policy/p.yaml"})  # type: ignore[arg-type]
    assert not missing.found and missing.path == "/srv/policy/p.yaml"
    enforce_policy(missing, load(spec), warnings.append)
    assert warnings and "no host policy at /srv/policy/p.yaml" in warnings[0]
    with pytest.raises(PolicyUnsafe, match="BGDEPLOY_REQUIRE_POLICY is set"):
        check_policy(_FakeHost({}, good), load(spec), {"BGDEPLOY_REQUIRE_POLICY": "1"})  # type: ignore[arg-type]
    with pytest.raises(PolicyUnsafe, match="must be absolute and normalised"):
        check_policy(_FakeHost({}, good), load(spec), {"BGDEPLOY_POLICY": "/etc/../tmp/p.yaml"})  # type: ignore[arg-type]
