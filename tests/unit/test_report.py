"""The markdown report and the JSON result: outcome first, and hostile model output kept harmless."""

from __future__ import annotations

import json
import re

from bgdeploy.analysis.verdict import Breach, LiveVerdict
from bgdeploy.plan.names import Colour
from bgdeploy.plan.result import Phase, Result
from bgdeploy.plan.state import Release
from bgdeploy.plan.steps import Change, DeployPlan, Step
from bgdeploy.plan.verdict import Answer, Check, PromptResult, Verdict
from bgdeploy.report.markdown import ANSWER_CHARS, LOG_LINES, escape_block, escape_inline, headline, render

OLD = "Qwen/Qwen2.5-7B-Instruct"
NEW = "meta-llama/Llama-3.1-8B-Instruct"
ZWJ = "\u200d"


def release(colour: Colour, model: str, spec_hash: str = "h") -> Release:
    return Release(colour, model, "vllm/vllm-openai:v0.9.2", spec_hash, "2025-01-01T00:00:00Z")


def prompt_result(
    name: str, text: str | None, *, failures: tuple[str, ...] = (), latency: float = 0.25
) -> PromptResult:
    answer = Answer(name, text, latency, 200 if text is not None else None, None if text is not None else "timed out")
    return PromptResult(name, answer, not failures, failures)


def verdict(*results: PromptResult, checks: tuple[Check, ...] = ()) -> Verdict:
    passed = all(r.passed for r in results) and all(c.ok for c in checks)
    rate = sum(r.passed for r in results) / len(results) if results else 1.0
    return Verdict(tuple(results), checks, passed, rate, 0.0, 0.25)


def deployed(**kwargs: object) -> Result:
    result = Result(
        command="deploy",
        name="chat",
        outcome="deployed",
        active_colour="green",
        previous_colour="blue",
        live_before=release("blue", OLD),
        target=release("green", NEW),
    )
    for key, value in kwargs.items():
        setattr(result, key, value)
    return result


def table_rows(markdown: str, header_start: str) -> list[str]:
    """The lines of the table whose header line starts with `header_start`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def cells(row: str) -> list[str]:
    """Split a GFM table row on its unescaped pipes (a backslash escapes the next character)."""
    parts: list[str] = []
    current = ""
    i = 0
    while i < len(row):
        ch = row[i]
        if ch == "\\" and i + 1 < len(row):
            current += row[i : i + 2]
            i += 2
            continue
        if ch == "|":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    assert parts[0].strip() == "" and parts[-1].strip() == "", row
    return [p.strip() for p in parts[1:-1]]


# --- headlines --------------------------------------------------------------------------------------------


def test_headline_deployed() -> None:
    line = headline(deployed())
    assert line.startswith("✅ **Deployed**: green now serves ")
    assert "meta-llama/Llama-3.1-8B-Instruct" in line
    assert "(was blue: Qwen/Qwen2.5-7B-Instruct)" in line


def test_headline_first_deploy_has_no_was() -> None:
    assert "(was" not in headline(deployed(live_before=None, previous_colour=None))


def test_headline_failed_says_what_still_serves() -> None:
    result = Result("deploy", "chat", outcome="failed", active_colour="blue", failure="green never became ready")
    line = headline(result)
    assert line.startswith("❌ **Deploy failed**: blue still serves.")
    assert "green never became ready" in line


def test_headline_failed_with_nothing_live() -> None:
    line = headline(Result("deploy", "chat", outcome="failed"))
    assert "nothing was live before" in line
    assert "unknown failure" in line


def test_headline_unchanged() -> None:
    result = Result("deploy", "chat", outcome="unchanged", active_colour="blue", live_before=release("blue", OLD))
    line = headline(result)
    assert line.startswith("⏸️ **Unchanged**: blue already serves ")
    assert line.endswith(" with this spec")


def test_headline_rolled_back() -> None:
    result = Result("rollback", "chat", outcome="rolled-back", target=release("blue", OLD))
    line = headline(result)
    assert line.startswith("↩️ **Rolled back**: blue serves ")
    assert line.endswith(" again")


def test_headline_planned_is_the_outcome_alone() -> None:
    assert headline(Result("plan", "chat", outcome="planned")) == "📝 **Planned**"


def test_plain_headline_has_no_markdown() -> None:
    hostile = "org/my_model*v2 [x](y) #1 <b> & @octocat"
    result = deployed(target=release("green", hostile))
    plain = headline(result, markdown=False)
    assert "**" not in plain
    assert "\\" not in plain
    assert "`" not in plain
    assert ZWJ not in plain
    assert "&lt;" not in plain and "&amp;" not in plain
    assert plain.startswith("✅ Deployed: green now serves ")
    assert hostile in plain


def test_plain_failed_headline() -> None:
    result = Result("deploy", "chat", outcome="failed", active_colour="blue", failure="pull of a_b failed (exit 1)")
    assert headline(result, markdown=False) == "❌ Deploy failed: blue still serves. pull of a_b failed (exit 1)"


# --- the report -------------------------------------------------------------------------------------------


def test_render_starts_with_title_and_headline() -> None:
    lines = render(deployed()).splitlines()
    assert lines[0] == "### bgdeploy `chat`: deploy"
    assert lines[2] == headline(deployed())


def test_render_ends_with_one_newline() -> None:
    text = render(deployed())
    assert text.endswith("\n")
    assert not text.endswith("\n\n")


def test_change_table() -> None:
    plan = DeployPlan(
        "green",
        False,
        (Change("model", OLD, NEW), Change("live colour", "blue", "green")),
        (Step("start", "start green"),),
    )
    rows = table_rows(render(deployed(plan=plan)), "| change |")
    assert len(rows) == 4
    assert cells(rows[3]) == ["live colour", "blue", "green"]


def test_plan_command_lists_steps() -> None:
    plan = DeployPlan("blue", False, (), (Step("start", "start blue"), Step("bake", "watch", "rollout.bake is 0")))
    text = render(Result("plan", "chat", outcome="planned", plan=plan))
    assert "     1. start: start blue" in text
    assert "     2. bake: skipped: rollout.bake is 0" in text


def test_validation_table_with_live_comparison() -> None:
    green = verdict(prompt_result("capital", "Paris"), prompt_result("sum", "5", failures=('missing "4"',)))
    blue = verdict(prompt_result("capital", "Paris."))
    text = render(deployed(validation=green, live_validation=blue))
    assert "#### Validation of green" in text
    rows = table_rows(text, "| prompt |")
    assert cells(rows[0]) == ["prompt", "green", "latency", "answer", "blue", "latency", "answer"]
    assert all(len(cells(row)) == 7 for row in rows)
    assert cells(rows[2]) == ["capital", "✅ pass", "250ms", "Paris", "✅ pass", "250ms", "Paris."]
    # A prompt the live colour did not answer shows dashes.
    assert cells(rows[3])[4:] == ["-", "-", "-"]
    assert cells(rows[3])[1].startswith("❌ missing")


def test_validation_table_without_live_comparison() -> None:
    text = render(deployed(validation=verdict(prompt_result("capital", "Paris"))))
    rows = table_rows(text, "| prompt |")
    assert cells(rows[0]) == ["prompt", "green", "latency", "answer"]
    assert all(len(cells(row)) == 4 for row in rows)


def test_failed_request_shows_its_error() -> None:
    text = render(deployed(validation=verdict(prompt_result("capital", None, failures=("timed out",)))))
    row = cells(table_rows(text, "| prompt |")[2])
    assert row[1] == "❌ timed out"
    assert row[3] == "timed out"


def test_threshold_rows() -> None:
    checks = (
        Check("pass rate", "≥ 100%", "50% (1 of 2 prompts)", False),
        Check("error rate", "≤ 0%", "0% (0 of 2 requests)", True),
    )
    text = render(deployed(validation=verdict(prompt_result("capital", "Paris"), checks=checks)))
    rows = table_rows(text, "| threshold |")
    assert len(rows) == 4
    assert cells(rows[2]) == ["pass rate", "≥ 100%", "50% (1 of 2 prompts)", "❌"]
    assert cells(rows[3]) == ["error rate", "≤ 0%", "0% (0 of 2 requests)", "✅"]


def test_smoke_table() -> None:
    text = render(deployed(smoke=verdict(prompt_result("capital", "Paris"))))
    assert "#### Smoke test through the router" in text
    assert cells(table_rows(text, "| prompt |")[0]) == ["prompt", "result", "latency", "answer"]


def test_bake_section() -> None:
    bake = LiveVerdict("breached", 200, 10, 0.05, 1.5, (Breach("error_rate", 0.05, 0.01, 200, 10),))
    text = render(deployed(outcome="rolled-back", bake=bake))
    assert "200 requests, 10 errors (5%), p95 1.5s: breached" in text
    assert "- error rate 5% &gt; 1% \\(10 of 200 requests\\)" in text


def test_inconclusive_bake() -> None:
    text = render(deployed(bake=LiveVerdict("inconclusive", 3, 0, 0.0, None)))
    assert "3 requests, 0 errors (0%), p95 -: inconclusive (too few requests)" in text


def test_phases_table() -> None:
    phases = [Phase("pull-image", 12.5, "ok"), Phase("wait-ready", 0.85, "failed"), Phase("bake", 0, "skipped")]
    text = render(deployed(phases=phases, duration_s=13.35))
    rows = table_rows(text, "| phase |")
    assert [cells(r) for r in rows[2:]] == [
        ["pull-image", "12.5s", "ok"],
        ["wait-ready", "850ms", "failed"],
        ["bake", "0ms", "skipped"],
    ]
    assert "Total: 13.35s" in text


def test_failed_logs_in_a_text_fence() -> None:
    logs = [f"line {i}" for i in range(LOG_LINES + 5)]
    text = render(Result("deploy", "chat", outcome="failed", active_colour="blue", failed_logs=logs))
    assert "#### Last log lines of the failed container" in text
    body = text.split("```text\n", 1)[1].split("\n```", 1)[0]
    assert body.splitlines() == logs[-LOG_LINES:]


def test_warnings_and_gpu_lines() -> None:
    text = render(deployed(warnings=["took over a stale lock"], gpu_lines=["0: H100 80GB, 1024 MiB used"]))
    assert "**Warnings:**\n- took over a stale lock" in text
    assert "GPUs on the host:\n- 0: H100 80GB, 1024 MiB used" in text


# --- hostile model output ---------------------------------------------------------------------------------


def test_pipe_cannot_break_a_table_row() -> None:
    hostile = "a | b || c \\| d |"
    green = verdict(prompt_result("capital", hostile))
    blue = verdict(prompt_result("capital", "x|y|z"))
    rows = table_rows(render(deployed(validation=green, live_validation=blue)), "| prompt |")
    row = cells(rows[2])
    assert len(row) == 7
    assert row[3] == "a \\| b \\|\\| c \\\\\\| d \\|"
    assert row[6] == "x\\|y\\|z"


def test_html_is_escaped() -> None:
    text = render(deployed(validation=verdict(prompt_result("capital", "<script>alert(1)</script> & more"))))
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "&amp; more" in text


def test_mentions_do_not_ping() -> None:
    result = deployed(
        validation=verdict(prompt_result("capital", "cc @octocat")),
        failed_logs=["error reported by @octocat"],
        warnings=["ask @octocat"],
    )
    text = render(result)
    assert re.search(r"@(?!\u200d)", text) is None
    assert f"@{ZWJ}octocat" in text


def test_fence_cannot_be_closed_from_inside() -> None:
    logs = ["before", "```", "````", "  ```", "# not a heading", "```text", "after"]
    text = render(Result("deploy", "chat", outcome="failed", active_colour="blue", failed_logs=logs))
    block = text.split("#### Last log lines of the failed container\n\n", 1)[1]
    lines = block.splitlines()
    assert lines[0] == "```text"
    # The only line that can close the fence (up to 3 spaces, then 3+ backticks) is the real closing one.
    closing = [i for i, line in enumerate(lines[1:], start=1) if re.match(r"^ {0,3}```", line)]
    assert closing == [len(logs) + 1]
    assert lines[closing[0]] == "```"


def test_escape_block_neutralises_triple_backticks_anywhere() -> None:
    block = escape_block(["x ``` y"])
    assert block.splitlines()[1].count("```") == 0


def test_hidden_marker_in_model_output_is_neutralised() -> None:
    marker = "<!-- bgdeploy:chat -->"
    result = deployed(
        validation=verdict(prompt_result("capital", marker)),
        warnings=[marker],
        target=release("green", marker),
    )
    text = render(result)
    assert "<!--" not in text
    assert "bgdeploy:chat" in text  # shown, not hidden


def test_markdown_link_and_image_syntax_is_escaped() -> None:
    out = escape_inline("![x](https://evil.example/p.png) [click](https://evil.example)")
    assert "![" not in out
    assert "](" not in out


def test_long_answers_are_shortened() -> None:
    out = escape_inline("a" * 500)
    assert out.endswith("…")
    assert len(out) == ANSWER_CHARS
    text = render(deployed(validation=verdict(prompt_result("capital", "word " * 200))))
    answer = cells(table_rows(text, "| prompt |")[2])[3]
    assert answer.endswith("…")
    assert len(answer) <= ANSWER_CHARS


def test_newlines_in_answers_stay_in_one_row() -> None:
    text = render(deployed(validation=verdict(prompt_result("capital", "Paris\n\n| x | y |\nLyon"))))
    rows = table_rows(text, "| prompt |")
    assert len(rows) == 3
    assert len(cells(rows[2])) == 4


def test_short_answers_are_kept_whole() -> None:
    assert escape_inline("Paris") == "Paris"


# --- JSON -------------------------------------------------------------------------------------------------


def test_result_to_json() -> None:
    plan = DeployPlan("green", False, (Change("model", OLD, NEW),), (Step("start", "start green"),))
    result = deployed(
        plan=plan,
        phases=[Phase("start", 1.5, "ok")],
        validation=verdict(prompt_result("capital", "Paris"), checks=(Check("pass rate", "≥ 100%", "100%", True),)),
        bake=LiveVerdict("passed", 50, 0, 0.0, 0.4),
    )
    data = json.loads(result.to_json())
    assert data["outcome"] == "deployed"
    assert data["phases"] == [{"name": "start", "seconds": 1.5, "outcome": "ok", "detail": ""}]
    assert data["validation"]["passed"] is True
    assert data["validation"]["results"][0]["name"] == "capital"
    assert data["validation"]["results"][0]["answer"]["text"] == "Paris"
    assert data["validation"]["checks"][0]["name"] == "pass rate"
    assert data["plan"]["changes"] == [{"what": "model", "before": OLD, "after": NEW}]
    assert data["target"]["colour"] == "green"
    assert data["live_validation"] is None


def test_phase_seconds_sums_repeated_phases() -> None:
    result = deployed(phases=[Phase("bake", 1.0, "ok"), Phase("bake", 2.5, "ok"), Phase("start", 9.0, "ok")])
    assert result.phase_seconds("bake") == 3.5
    assert result.phase_seconds("missing") == 0.0


def test_canary_progression_table_and_chart() -> None:
    from bgdeploy.plan.result import CanaryRecord

    def live(requests: int, errors: int, p95: float) -> LiveVerdict:
        return LiveVerdict("passed", requests, errors, errors / requests, p95)

    breach = LiveVerdict("breached", 40, 2, 0.05, 0.2, (Breach("error_rate", 0.05, 0.01, 40, 2),))
    result = Result(
        command="deploy",
        name="chat",
        outcome="failed",
        failure="canary step 2 breached",
        active_colour="blue",
        previous_colour="blue",
        target=Release("green", "acme/v2", "img", "h", "t"),
    )
    result.canary = [
        CanaryRecord(1, 10, 60.0, live(30, 0, 0.1), live(270, 0, 0.09), "passed"),
        CanaryRecord(2, 50, 12.5, breach, live(45, 0, 0.1), "breached"),
    ]
    text = render(result)
    assert "| step | weight | held | green requests |" in text
    assert "| 1 | 10% | 60s | 30 | 0% | 100ms | 270 | 0% | 90ms | ✅ passed |" in text
    assert "❌ breached" in text and "error rate 5% &gt; 1% \\(2 of 40 requests\\)" in text
    assert "xychart-beta" in text and "bar [10, 50]" in text and "line [10, 47]" in text


def test_every_outcome_has_a_headline() -> None:
    from typing import get_args

    from bgdeploy.plan.result import Outcome
    from bgdeploy.report.markdown import _OUTCOME

    assert set(_OUTCOME) == set(get_args(Outcome))


def test_the_plain_headline_is_written_plain_not_unescaped() -> None:
    result = deployed(target=release("green", "acme/my_model*v2 <beta> @team"))
    assert headline(result, markdown=False) == (
        f"✅ Deployed: green now serves acme/my_model*v2 <beta> @team (was blue: {OLD})"
    )
    assert "my\\_model\\*v2 &lt;beta&gt; @\u200dteam" in headline(result)
