"""Eval sets (parsing, sampling, confinement), structured answers, streamed figures and the gates against live."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bgdeploy.analysis.model_metrics import ModelFigures, judge_model, model_breach_text, snapshot
from bgdeploy.analysis.model_metrics import figures as model_figures
from bgdeploy.analysis.prometheus import QueryState, render_query
from bgdeploy.errors import SpecError
from bgdeploy.plan.evaluation import agreement, dataset_result, load_figures, relative_gates
from bgdeploy.plan.evaluation_report import dataset_tables, load_table, relative_table
from bgdeploy.plan.structured import ToolCall
from bgdeploy.plan.verdict import Answer, Verdict, judge, judge_answer
from bgdeploy.spec import parse_spec_text
from bgdeploy.spec.models import PrometheusQuery, Prompt, RollbackOn, Thresholds
from bgdeploy.transports.http import StreamReader, request_body
from bgdeploy.transports.prometheus import largest_sample as prometheus_value
from bgdeploy.untrusted.markdown import escape_inline
from tests.unit.conftest import MINIMAL

CAPITAL = {"chat": "What is the capital of France?", "expect": {"contains": "Paris"}}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def write_lines(path: Path, lines: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def spec_with(tmp_path: Path, datasets: str, extra: str = "") -> str:
    (tmp_path / ".git").mkdir(exist_ok=True)
    text = MINIMAL + f"validation:\n  datasets: {datasets}\n{extra}"
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(text)
    return str(spec)


def load(path: str) -> Any:
    return parse_spec_text(Path(path).read_text(), path, environ={})


def problems(path: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(path)
    return caught.value.render().splitlines()


# --- eval sets ------------------------------------------------------------------------------------------


def test_a_dataset_is_sampled_with_its_seed_the_same_way_every_time(tmp_path: Path) -> None:
    write_lines(tmp_path / "evals/chat.jsonl", [{"chat": f"What is {i}+1?"} for i in range(300)])
    path = spec_with(tmp_path, "[{path: evals/chat.jsonl, sample: 20, seed: 7}]")
    first = load(path).datasets[0]
    again = load(path).datasets[0]
    assert first.total == 300 and len(first.prompts) == 20
    assert [p.name for p in first.prompts] == [p.name for p in again.prompts]
    # In file order, named PATH:LINE, and not simply the first 20 lines.
    lines = [int(p.name.rsplit(":", 1)[1]) for p in first.prompts]
    assert lines == sorted(lines) and max(lines) > 20
    other = spec_with(tmp_path, "[{path: evals/chat.jsonl, sample: 20, seed: 8}]")
    assert [p.name for p in load(other).datasets[0].prompts] != [p.name for p in first.prompts]


def test_without_sample_every_prompt_is_asked_and_named_lines_keep_their_name(tmp_path: Path) -> None:
    write_lines(tmp_path / "evals/a.jsonl", [CAPITAL, "", {"name": "sum", "chat": "What is 2+2?"}])
    loaded = load(spec_with(tmp_path, "[{path: evals/a.jsonl}]"))
    assert [p.name for p in loaded.datasets[0].prompts] == ["evals/a.jsonl:1", "evals/a.jsonl:sum"]


def test_bad_lines_are_reported_as_file_line_with_the_specs_other_problems(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "evals/a.jsonl",
        [
            CAPITAL,
            "{not json",
            {"chat": "x", "expct": {}},
            [1, 2],
            {"prompt": "p", "tools": [WEATHER_TOOL]},
            {"chat": "w", "tools": [WEATHER_TOOL], "expect": {"tool_call": {"name": "get_wether"}}},
            {"chat": "j", "expect": {"json_schema": {"type": 5}}},
            {"chat": "m", "chat2": 1} | {"messages": [{"role": "user", "content": "hi"}]},
        ],
    )
    found = problems(spec_with(tmp_path, "[{path: evals/a.jsonl}]", "  concurrency: 0\n"))
    text = "\n".join(found)
    assert "bluegreen.yaml:12:16: validation.concurrency" in text, text
    file = os.path.join(str(tmp_path), "evals/a.jsonl")
    assert f"{file}:2:2: not JSON" in text
    assert f"{file}:3:1: expct: unknown key 'expct'; did you mean 'expect'?" in text
    assert f"{file}:4:1: a line must be a JSON object" in text
    assert f"{file}:5:1: tools: tools is only used with chat or messages" in text
    assert f"{file}:6:1: expect.tool_call.name: 'get_wether' is not among the prompt's tools" in text
    assert f"{file}:7:1: expect.json_schema: not a valid JSON Schema" in text
    assert f"{file}:8:1: chat2: unknown key 'chat2'; did you mean 'chat'?" in text


@pytest.mark.parametrize(
    ("written", "why"),
    [("../outside.jsonl", "must not contain `..`"), ("evals/../../outside.jsonl", "must not contain `..`")],
)
def test_a_dataset_cannot_leave_the_checkout(tmp_path: Path, written: str, why: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write_lines(tmp_path / "outside.jsonl", [CAPITAL])
    found = problems(spec_with(repo, f"[{{path: {json.dumps(written)}}}]"))
    assert any(why in line and "validation.datasets[0].path" in line for line in found), found


def test_an_absolute_path_is_a_schema_error(tmp_path: Path) -> None:
    found = problems(spec_with(tmp_path, "[{path: /etc/passwd}]"))
    assert any("validation.datasets[0].path" in line for line in found), found


def test_a_symlink_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "evals").mkdir(parents=True)
    write_lines(tmp_path / "secret.jsonl", [CAPITAL])
    (repo / "evals/chat.jsonl").symlink_to(tmp_path / "secret.jsonl")
    found = problems(spec_with(repo, "[{path: evals/chat.jsonl}]"))
    assert any("outside the repository checkout" in line for line in found), found


def test_github_workspace_is_the_checkout_when_it_holds_the_spec(tmp_path: Path) -> None:
    sub = tmp_path / "deploy"
    sub.mkdir()
    write_lines(tmp_path / "shared/evals.jsonl", [CAPITAL])
    text = MINIMAL + "validation:\n  datasets: [{path: ../shared/evals.jsonl}]\n"
    with pytest.raises(SpecError):  # `..` is refused even inside the workspace
        parse_spec_text(text, str(sub / "bluegreen.yaml"), environ={"GITHUB_WORKSPACE": str(tmp_path)})


def test_a_missing_or_empty_dataset_is_a_problem_at_its_path(tmp_path: Path) -> None:
    write_lines(tmp_path / "evals/empty.jsonl", [""])
    found = problems(spec_with(tmp_path, "[{path: evals/missing.jsonl}, {path: evals/empty.jsonl}]"))
    text = "\n".join(found)
    assert "evals/missing.jsonl: no such file" in text
    assert "empty.jsonl:1:1: the eval set has no prompts" in text


def test_relative_gates_need_compare_with_live_and_ttft_needs_streaming(tmp_path: Path) -> None:
    write_lines(tmp_path / "evals/a.jsonl", [CAPITAL])
    extra = "  compare_with_live: false\n  stream: false\n  thresholds: {min_pass_rate_vs_live: -0.02, ttft_p95: 1s}\n"
    text = "\n".join(problems(spec_with(tmp_path, "[{path: evals/a.jsonl}]", extra)))
    assert "min_pass_rate_vs_live compares green with the live colour" in text
    assert "ttft_p95 needs streamed validation" in text


# --- structured answers ---------------------------------------------------------------------------------


def chat(**extra: Any) -> Prompt:
    return Prompt.model_validate({"name": "p", "chat": "What is the weather in Paris?", **extra})


def answer(text: str | None = "", calls: tuple[ToolCall, ...] = (), **extra: Any) -> Answer:
    return Answer(
        "p",
        text,
        0.5,
        200 if text is not None else 500,
        None if text is not None else "HTTP 500",
        tool_calls=calls,
        **extra,
    )


def test_a_tool_call_must_name_the_tool_and_match_the_arguments_schema() -> None:
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    p = chat(tools=[WEATHER_TOOL], expect={"tool_call": {"name": "get_weather", "arguments_schema": schema}})
    assert judge_answer(p, answer(calls=(ToolCall("get_weather", '{"city": "Paris"}'),))).passed
    assert judge_answer(p, answer("It is sunny.")).failures == ("no call to tool 'get_weather' (calls made: none)",)
    missing = judge_answer(p, answer(calls=(ToolCall("get_weather", "{}"),))).failures
    assert missing == ("the arguments of 'get_weather' does not match its schema: 'city' is a required property",)
    broken = judge_answer(p, answer(calls=(ToolCall("get_weather", '{"city":'),))).failures
    assert broken[0].startswith("the arguments of 'get_weather' are not JSON")


def test_json_schema_answers() -> None:
    schema = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
    p = chat(response_format={"type": "json_object"}, expect={"json_schema": schema})
    assert judge_answer(p, answer('{"answer": "Paris"}')).passed
    assert judge_answer(p, answer('{"answer": 3}')).failures == (
        "the answer does not match its schema: 3 is not of type 'string' at answer",
    )
    assert judge_answer(p, answer('```json\n{"answer": "x"}```')).failures[0].startswith("not valid JSON")


def test_request_body_carries_conversation_tools_and_stream_options() -> None:
    p = Prompt.model_validate(
        {
            "name": "p",
            "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": "weather?"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
        }
    )  # fmt: skip
    path, body = request_body(p, "chat", stream=True)
    assert path == "/v1/chat/completions"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == "required"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def sse(payload: Any) -> str:
    return "data: " + json.dumps(payload)


def call(**function: str) -> dict[str, Any]:
    return {"index": 0, "function": function}


def test_stream_reader_measures_ttft_itl_tokens_and_tool_calls() -> None:
    reader = StreamReader(chat=True)
    events = [
        (sse({"choices": [{"delta": {"role": "assistant", "content": ""}}]}), 0.05),
        ("", 0.05),
        (sse({"choices": [{"delta": {"content": "The"}}]}), 0.5),
        (sse({"choices": [{"delta": {"content": " capital"}}]}), 0.7),
        (sse({"choices": [{"delta": {"tool_calls": [call(name="f", arguments='{"a"')]}}]}), 0.9),
        (sse({"choices": [{"delta": {"tool_calls": [call(arguments=": 1}")]}}]}), 1.1),
        (sse({"choices": [], "usage": {"completion_tokens": 9}}), 1.2),
    ]  # fmt: skip
    for line, at in events:
        assert reader.feed(line, at)
    assert not reader.feed("data: [DONE]", 1.3)
    assert reader.text() == "The capital"
    assert reader.times == [0.5, 0.7, 0.9, 1.1]  # role-only and usage chunks are not tokens
    assert reader.usage_tokens == 9 and reader.chunks == 4
    assert reader.calls() == (ToolCall("f", '{"a": 1}'),)


def test_stream_reader_refuses_garbage() -> None:
    reader = StreamReader(chat=False)
    assert not reader.feed("data: {oops", 0.1)
    assert reader.broken is not None and "not JSON" in reader.broken


# --- figures and gates against live ---------------------------------------------------------------------


def prompts(n: int) -> list[Prompt]:
    return [Prompt.model_validate({"name": f"p{i}", "chat": "x", "expect": {"contains": "yes"}}) for i in range(n)]


def verdict(ps: list[Prompt], good: int, ttft: float, itl: float = 0.02, latency: float = 1.0, **thr: Any) -> Verdict:
    answers = [
        Answer(p.name, "yes" if i < good else "no", latency, 200, None, ttft_s=ttft, itl_s=itl, output_tokens=10,
               tokens_per_s=10 / latency)
        for i, p in enumerate(ps)
    ]  # fmt: skip
    return judge(ps, answers, Thresholds(pass_rate=0, **thr))


def test_stream_figures_and_absolute_gates() -> None:
    ps = prompts(20)
    v = verdict(ps, 20, ttft=0.3, itl=0.05, ttft_p95=0.25, itl_p95=0.1)
    assert v.ttft_p95_s == 0.3 and v.ttft_p50_s == 0.3 and v.itl_p95_s == 0.05 and v.tokens_per_s == 10
    by_name = {c.name: c for c in v.checks}
    assert not by_name["TTFT p95"].ok and by_name["ITL p95"].ok and not v.passed


def test_a_green_that_loses_more_than_allowed_is_refused_and_an_equal_one_goes() -> None:
    ps = prompts(100)
    live = verdict(ps, 95, ttft=0.2)
    worse = relative_gates(Thresholds(min_pass_rate_vs_live=-0.02), ps, verdict(ps, 90, ttft=0.2), live)
    assert [(c.ok, c.actual) for c in worse] == [(False, "−5% (90% vs 95%)")]
    same = relative_gates(Thresholds(min_pass_rate_vs_live=-0.02), ps, verdict(ps, 94, ttft=0.2), live)
    assert same[0].ok


def test_ttft_itl_latency_ratios_and_agreement() -> None:
    ps = prompts(20)
    live = verdict(ps, 20, ttft=0.2, itl=0.02, latency=1.0)
    green = verdict(ps, 18, ttft=0.5, itl=0.02, latency=1.1)
    thresholds = Thresholds(
        max_ttft_p95_vs_live=1.2, max_itl_p95_vs_live=1.2, max_latency_p95_vs_live=1.2, min_agreement_with_live=0.95
    )
    checks = {c.name: c for c in relative_gates(thresholds, ps, green, live)}
    assert not checks["TTFT p95 vs live"].ok and checks["TTFT p95 vs live"].actual.startswith("2.50×")
    assert checks["ITL p95 vs live"].ok and checks["latency p95 vs live"].ok
    assert not checks["agreement with live"].ok and checks["agreement with live"].actual == "90% (18 of 20 prompts)"
    assert agreement(ps, green, green).rate == 1.0


def test_with_nothing_live_gates_are_skipped_and_said_and_missing_figures_are_not_judged() -> None:
    ps = prompts(5)
    thresholds = Thresholds(min_pass_rate_vs_live=0, max_ttft_p95_vs_live=1.5)
    skipped = relative_gates(thresholds, ps, verdict(ps, 5, ttft=0.1), None, no_live_reason="nothing is live")
    assert [(c.ok, c.judged, c.actual) for c in skipped] == [
        (True, False, "skipped: nothing is live"),
        (True, False, "skipped: nothing is live"),
    ]
    live = judge(ps, [Answer(p.name, "yes", 1.0, 200, None) for p in ps], Thresholds())  # not streamed
    unjudged = relative_gates(Thresholds(max_ttft_p95_vs_live=1.5), ps, verdict(ps, 5, ttft=0.1), live)
    assert unjudged[0].judged is False and unjudged[0].actual == "not judged: no TTFT measured on live"
    assert "⚪ not judged" in "\n".join(relative_table(list(unjudged)))


def test_dataset_results_list_failing_prompts_escaped_first_n() -> None:
    ps = [Prompt.model_validate({"name": "L1", "chat": "x", "expect": {"contains": "yes"}}).model_copy(
        update={"name": f"evals/a.jsonl:{i}"}) for i in range(1, 8)]  # fmt: skip
    answers = [Answer(p.name, "no <b>@team</b> | x", 0.1, 200, None) for p in ps]
    green = judge(ps, answers, Thresholds(pass_rate=0))
    result = dataset_result("evals/a.jsonl", 50, [p.name for p in ps], 7, 1, green, None, shown=3)
    assert result.green.failing_total == 7 and len(result.green.failing) == 3
    table = "\n".join(dataset_tables([result], "green", "blue", escape_inline))
    assert "7 of 50 (sample, seed 1)" in table and "(first 3 of 7)" in table
    assert "<b>" not in table and "@\u200dteam" in table and "\\|" in table


def test_load_figures_side_by_side() -> None:
    answers = [Answer(f"p{i}", "yes", 0.5, 200, None, ttft_s=0.1 * i, output_tokens=10) for i in range(1, 11)]
    answers.append(Answer("p11", None, 5.0, 500, "HTTP 500"))
    figures = load_figures("green", answers, 2.0)
    assert (figures.requests, figures.errors, figures.requests_per_s, figures.tokens_per_s) == (11, 1, 5.0, 50.0)
    assert figures.ttft_p95_s == 1.0 and figures.latency_p95_s == 0.5
    table = "\n".join(load_table([figures]))
    assert "| green | 11 | 1 | 5.0 | 50.0 | 1s | 500ms |" in table


# --- model metrics (vLLM /metrics) -----------------------------------------------------------------------


def metrics_text(ttft: list[float], waiting: float, itl: tuple[float, ...] = ()) -> str:
    def hist(name: str, values: list[float], bounds: tuple[float, ...]) -> list[str]:
        lines = [f'{name}_bucket{{model_name="chat",le="{b}"}} {sum(1 for v in values if v <= b)}' for b in bounds]
        lines += [f'{name}_bucket{{model_name="chat",le="+Inf"}} {len(values)}', f"{name}_count {len(values)}"]
        return [*lines, f"{name}_sum {sum(values)}"]

    bounds = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
    lines = [
        *hist("vllm:time_to_first_token_seconds", ttft, bounds),
        *hist("vllm:inter_token_latency_seconds", list(itl), bounds),
        f'vllm:num_requests_waiting{{model_name="chat"}} {waiting}',
        'vllm:kv_cache_usage_perc{model_name="chat"} 0.25',
        f'vllm:num_preemptions_total{{model_name="chat"}} {len(ttft) // 10}',
    ]
    return "\n".join(lines) + "\n"


def test_model_figures_are_over_the_window_only() -> None:
    before = snapshot(metrics_text([2.0] * 50, 0))  # slow requests before the window do not count
    after = snapshot(metrics_text([2.0] * 50 + [0.08] * 40, 3, itl=(0.02,) * 30))
    found = model_figures(before, after, queue_peak=3)
    assert found.requests == 40 and found.ttft_p95_s is not None and 0.05 < found.ttft_p95_s <= 0.1
    assert found.itl_p95_s is not None and found.itl_p95_s <= 0.05
    assert found.queue_peak == 3 and found.kv_cache == 0.25 and found.preemptions == 4


def test_model_gates_queue_at_once_latency_after_min_requests_and_relative_to_live() -> None:
    limits = RollbackOn(max_queue=2, ttft_p95=0.5, ttft_p95_vs_live=2)
    green = ModelFigures(requests=3, ttft_p95_s=1.0, itl_p95_s=0.01, queue_peak=5, kv_cache=None, preemptions=0)
    assert [b.kind for b in judge_model(green, None, limits, min_requests=20)] == ["max_queue"]
    busy = ModelFigures(requests=30, ttft_p95_s=1.0, itl_p95_s=0.01, queue_peak=0, kv_cache=None, preemptions=0)
    live = ModelFigures(requests=30, ttft_p95_s=0.2, itl_p95_s=0.01, queue_peak=0, kv_cache=None, preemptions=0)
    breaches = judge_model(busy, live, limits, min_requests=20)
    assert [b.kind for b in breaches] == ["ttft_p95", "ttft_p95_vs_live"]
    assert (
        model_breach_text(breaches[1])
        == "TTFT p95 1000ms > 400ms (2 × the old colour's 200ms) (rollback_on.ttft_p95_vs_live)"
    )
    assert judge_model(live, live, limits, min_requests=20) == ()


# --- Prometheus as an analysis provider ------------------------------------------------------------------


def test_placeholders_are_replaced_and_promql_braces_kept() -> None:
    query = 'max(vllm:num_requests_waiting{job="{name}",colour="{colour}",container="{container}"})'
    assert render_query(query, colour="green", name="chat", container="bgdeploy-chat-green") == (
        'max(vllm:num_requests_waiting{job="chat",colour="green",container="bgdeploy-chat-green"})'
    )


def test_a_limit_counts_once_broken_for_its_for_and_no_data_keeps_the_state() -> None:
    q = PrometheusQuery.model_validate({"name": "queue", "query": "x", "max": 2, "for": "3s"})
    state = QueryState()
    looks = [state.judge(q, t, value, None, None) for t, value in [(0, 5), (1, 5), (2, None), (3, 5), (4, 1), (5, 5)]]
    assert [(x.breaking, x.breached) for x in looks] == [
        (True, False), (True, False), (False, False), (True, True), (False, False), (True, False),
    ]  # fmt: skip
    low = PrometheusQuery.model_validate({"name": "rps", "query": "x", "min": 1})
    assert QueryState().judge(low, 0, 0.5, 3, None).breached


def test_prometheus_spec_rules(tmp_path: Path) -> None:
    extra = """analysis:
  prometheus:
    url: http://prometheus:9090
    queries:
      - {name: q, query: 'up{job="{job}"}', max: 1, min: 0}
      - {name: q, query: up}
"""
    spec = tmp_path / "bluegreen.yaml"
    spec.write_text(MINIMAL + extra)
    text = "\\n".join(problems(str(spec)))
    assert "analysis.prometheus.queries[0]: give exactly one of max or min" in text
    assert "unknown placeholder {job}; known: {colour}, {name}, {container}" in text
    assert "analysis.prometheus.queries[1].name: the query name 'q' is already used by query #1" in text


def test_prometheus_answers_are_read_as_their_largest_sample() -> None:
    vector = {"resultType": "vector", "result": [{"value": [1, "3"]}, {"value": [1, "7.5"]}, {"value": [1, "NaN"]}]}
    assert prometheus_value(vector) == 7.5
    assert prometheus_value({"resultType": "vector", "result": []}) is None
    assert prometheus_value({"resultType": "scalar", "result": [1, "2"]}) == 2.0
