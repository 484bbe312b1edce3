"""The choke points for untrusted text: workflow commands, markdown and secret masking, with a hostile corpus."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest

from bgdeploy.errors import DeployFailed
from bgdeploy.github import workflow_commands as wc
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from bgdeploy.report.markdown import render
from bgdeploy.untrusted import secrets
from bgdeploy.untrusted.commands import inert
from bgdeploy.untrusted.markdown import code_span, escape_block, escape_inline
from tests.unit.hostile import CORPUS

# What the runner does with a line: trims .NET whitespace, then `::name` at the start is a command, and the
# legacy `##[name]` form is matched anywhere.
_DOTNET_SPACE = "".join(
    chr(c)
    for c in (*range(9, 14), 32, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)


def acts_as_command(line: str) -> bool:
    return line.strip(_DOTNET_SPACE).startswith("::") or "##[" in line


def lines_of(text: str) -> list[str]:
    return re.split(r"\r\n|\n|\r", text)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    secrets.forget_all()
    yield
    secrets.forget_all()


@pytest.mark.parametrize("value", CORPUS)
def test_no_hostile_line_acts_as_a_workflow_command(value: str) -> None:
    assert not any(acts_as_command(line) for line in lines_of(inert(value)))


@pytest.mark.parametrize("value", CORPUS)
def test_our_own_commands_escape_their_data(value: str) -> None:
    line = wc.error(value, file=value, title=value)
    assert "\n" not in line and "\r" not in line
    # Properties have ":" and "," escaped, so the first "::" after the name really ends them.
    head = line.split("::", 2)[1]
    assert re.fullmatch(r"error file=[^:,]*,title=[^:,]*", head), head


def test_log_text_is_inert_and_masked() -> None:
    secrets.register("hf_supersecret_value")
    out: list[str] = []
    log = wc.Log(out.append)
    log.text("\n".join(CORPUS) + "\nhf_supersecret_value")
    for line in lines_of("\n".join(out)):
        assert not acts_as_command(line)
    assert "hf_supersecret_value" not in "\n".join(out)


def test_untrusted_block_sits_inside_stop_commands() -> None:
    out: list[str] = []
    wc.Log(out.append).untrusted_block("::error::x")
    token = re.fullmatch(r"::stop-commands::(\w+)", out[0])
    assert token and out[-1] == f"::{token.group(1)}::"
    assert not acts_as_command(out[1])


@pytest.mark.parametrize("value", CORPUS)
def test_inline_markdown_has_no_html_mention_marker_or_table_break(value: str) -> None:
    out = escape_inline(value, 400)
    assert "<" not in out and ">" not in out.replace("&gt;", "")
    assert not re.search(r"(?<![\w\u200d])@\w", out), "a mention would ping"
    assert "<!--" not in out
    assert "\n" not in out
    assert re.search(r"(?<!\\)\|", out) is None, "an unescaped pipe would end the table cell"
    assert "](" not in out


@pytest.mark.parametrize("value", CORPUS)
def test_code_blocks_cannot_be_closed_or_carry_a_marker(value: str) -> None:
    block = escape_block(value.split("\n"))
    inner = block.split("\n")[1:-1]
    assert not any(re.match(r"^ {0,3}(`{3,}|~{3,})", line) for line in inner if "```" in line or "~~~" in line)
    assert "<!--" not in "\n".join(inner)
    assert not re.search(r"(?<![\w\u200d])@\w", "\n".join(inner))
    span = code_span(value)
    assert span.count("`") == 2 and "\n" not in span


def test_a_report_of_hostile_values_keeps_them_inert() -> None:
    hostile = " ".join(CORPUS)
    result = Result(
        "deploy",
        "chat",
        outcome="failed",
        active_colour="blue",
        target=Release("green", hostile, hostile, "h", "t"),
        failure=hostile,
        failed_logs=list(CORPUS),
        warnings=list(CORPUS),
    )
    text = render(result)
    # Inside a fenced block HTML is shown, not rendered: check what is outside the blocks.
    text = re.sub(r"```text\n.*?\n```", "", text, flags=re.DOTALL)
    assert "<img" not in text and "<script" not in text and "<details" not in text
    assert "<!--" not in text
    assert not re.search(r"(?<![\w\u200d`])@\w", text)


# -- secrets ------------------------------------------------------------------------------------------------

KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "\n".join(f"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ{i:06d}" for i in range(4))
    + "\n-----END OPENSSH PRIVATE KEY-----\n"
)


def test_every_registered_secret_is_masked_everywhere() -> None:
    secrets.register(KEY)
    secrets.register("ghs_TokenTokenToken")
    secrets.register("hf_abcdefgh")
    line = KEY.splitlines()[2]
    text = f"log: {line} token ghs_TokenTokenToken hf=hf_abcdefgh"
    assert secrets.mask(text) == "log: *** token *** hf=***"
    assert "ghs_Token" not in str(DeployFailed("container said ghs_TokenTokenToken"))
    data = secrets.mask_data({"a": ["hf_abcdefgh"], "hf_abcdefgh": 1})
    assert "hf_abcdefgh" not in json.dumps(data)
    # JSON escapes a multi-line key's newlines: masked in that form too.
    assert KEY.strip() not in secrets.mask_json(json.dumps({"k": KEY}))
    assert line not in secrets.mask_json(json.dumps({"k": KEY}))


def test_short_values_are_not_masked() -> None:
    secrets.register("ab")
    assert secrets.mask("ab cd") == "ab cd"


def test_the_masking_stream_masks_across_writes_and_makes_lines_inert() -> None:
    secrets.register("hf_abcdefgh")
    target = io.StringIO()
    stream = secrets.MaskingStream(target, lambda line: inert(line))
    stream.write("token hf_abc")
    stream.write("defgh\n  ::error::x\n")
    stream.raw_write("::group::ours")
    stream.write("##[warning]y")
    stream.flush()
    out = target.getvalue().split("\n")
    assert out[0] == "token ***"
    assert not acts_as_command(out[1])
    assert out[2] == "::group::ours"
    assert not acts_as_command(out[3])


def test_state_and_history_are_masked() -> None:
    from bgdeploy.plan.state import HostState, history_line

    secrets.register("hf_abcdefgh")
    state = HostState("chat", live=Release("blue", "m", "img", "h", "hf_abcdefgh"))
    assert b"hf_abcdefgh" not in state.to_json()
    assert b"hf_abcdefgh" not in history_line({"failure": "log: hf_abcdefgh"})
