"""Prometheus text parsing and histogram maths, on a /metrics text shaped like vLLM 0.9's."""

from __future__ import annotations

import math

import pytest

from bgdeploy.plan.metrics import (
    Histogram,
    Sample,
    counter,
    delta,
    gauge,
    histogram,
    parse,
    quantile,
)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# Modelled on what vLLM 0.9 (prometheus_client, text format 0.0.4) serves: process metrics first, `_created`
# series next to counters and histograms, engine and model_name labels, the histogram's buckets before _count/_sum.
VLLM_METRICS = f"""\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{{generation="0"}} 12345.0
python_gc_objects_collected_total{{generation="1"}} 678.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.3456768e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{MODEL}"}} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}"}} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{MODEL}"}} 0.0421875
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{{engine="0",finished_reason="stop",model_name="{MODEL}"}} 90.0
vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL}"}} 8.0
vllm:request_success_total{{engine="0",finished_reason="abort",model_name="{MODEL}"}} 2.0
# HELP vllm:request_success_created Count of successfully processed requests.
# TYPE vllm:request_success_created gauge
vllm:request_success_created{{engine="0",finished_reason="stop",model_name="{MODEL}"}} 1.7641104e+09
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="0.3",model_name="{MODEL}"}} 0.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="0.5",model_name="{MODEL}"}} 10.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="0.8",model_name="{MODEL}"}} 30.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="1.0",model_name="{MODEL}"}} 60.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="1.5",model_name="{MODEL}"}} 80.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="2.0",model_name="{MODEL}"}} 90.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="5.0",model_name="{MODEL}"}} 98.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="10.0",model_name="{MODEL}"}} 100.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="+Inf",model_name="{MODEL}"}} 100.0
vllm:e2e_request_latency_seconds_count{{engine="0",model_name="{MODEL}"}} 100.0
vllm:e2e_request_latency_seconds_sum{{engine="0",model_name="{MODEL}"}} 112.75
# HELP vllm:e2e_request_latency_seconds_created Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds_created gauge
vllm:e2e_request_latency_seconds_created{{engine="0",model_name="{MODEL}"}} 1.7641104e+09
"""


def hist(buckets: list[tuple[float, float]], total: float = 0.0) -> Histogram:
    return Histogram(buckets=buckets, count=buckets[-1][1], sum=total)


def test_vllm_text_parses_every_sample_and_no_comment() -> None:
    samples = parse(VLLM_METRICS)
    assert len(samples) == 22
    assert all(not s.name.startswith("#") for s in samples)
    running = samples[3]
    assert running == Sample("vllm:num_requests_running", (("engine", "0"), ("model_name", MODEL)), 3.0)
    assert running.label("model_name") == MODEL
    assert running.label("le") is None
    assert samples[2] == Sample("process_resident_memory_bytes", (), 2345676800.0)


def test_gauges_by_name_and_labels() -> None:
    samples = parse(VLLM_METRICS)
    assert gauge(samples, "vllm:num_requests_running") == 3.0
    assert gauge(samples, "vllm:num_requests_running", model_name=MODEL) == 3.0
    assert gauge(samples, "vllm:num_requests_running", model_name="other") is None
    assert gauge(samples, "vllm:num_requests_waiting") == 1.0
    assert gauge(samples, "vllm:kv_cache_usage_perc") == pytest.approx(0.0421875)
    assert gauge(samples, "vllm:no_such_metric") is None


def test_gauge_sums_across_series() -> None:
    text = 'vllm:num_requests_running{engine="0"} 2\nvllm:num_requests_running{engine="1"} 5\n'
    assert gauge(parse(text), "vllm:num_requests_running") == 7.0
    assert gauge(parse(text), "vllm:num_requests_running", engine="1") == 5.0


def test_counter_sums_reasons_and_finds_the_total_suffix() -> None:
    samples = parse(VLLM_METRICS)
    assert counter(samples, "vllm:request_success_total") == 100.0
    assert counter(samples, "vllm:request_success") == 100.0
    assert counter(samples, "vllm:request_success_total", finished_reason="abort") == 2.0
    assert counter(samples, "vllm:request_success", finished_reason="stop", model_name=MODEL) == 90.0
    assert counter(samples, "vllm:request_failure_total") is None


def test_histogram_from_vllm_text() -> None:
    h = histogram(parse(VLLM_METRICS), "vllm:e2e_request_latency_seconds")
    assert h is not None
    assert h.buckets == [
        (0.3, 0.0),
        (0.5, 10.0),
        (0.8, 30.0),
        (1.0, 60.0),
        (1.5, 80.0),
        (2.0, 90.0),
        (5.0, 98.0),
        (10.0, 100.0),
        (math.inf, 100.0),
    ]
    assert (h.count, h.sum) == (100.0, 112.75)
    # p50: rank 50 lies in (0.8, 1.0] holding 30..60 → 0.8 + 0.2 × 20/30.
    assert quantile(h, 0.5) == pytest.approx(0.8 + 0.2 * 20 / 30)
    # p95: rank 95 lies in (2.0, 5.0] holding 90..98 → 2.0 + 3.0 × 5/8.
    assert quantile(h, 0.95) == pytest.approx(3.875)
    assert histogram(parse(VLLM_METRICS), "vllm:time_to_first_token_seconds") is None


def test_histogram_sums_label_sets_other_than_le() -> None:
    text = """\
lat_bucket{engine="0",le="1"} 1
lat_bucket{engine="0",le="+Inf"} 2
lat_count{engine="0"} 2
lat_sum{engine="0"} 3.5
lat_bucket{engine="1",le="1.0"} 4
lat_bucket{engine="1",le="+Inf"} 6
lat_count{engine="1"} 6
lat_sum{engine="1"} 9.5
"""
    samples = parse(text)
    assert histogram(samples, "lat") == Histogram(buckets=[(1.0, 5.0), (math.inf, 8.0)], count=8.0, sum=13.0)
    assert histogram(samples, "lat", engine="1") == Histogram(buckets=[(1.0, 4.0), (math.inf, 6.0)], count=6.0, sum=9.5)


def test_histogram_without_count_sum_or_inf_bucket() -> None:
    only_buckets = histogram(parse('h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 3\n'), "h")
    assert only_buckets is not None
    assert only_buckets.count == 3.0
    assert math.isnan(only_buckets.sum)
    no_inf = histogram(parse('h_bucket{le="1"} 2\nh_count 3\nh_sum 4\n'), "h")
    assert no_inf == Histogram(buckets=[(1.0, 2.0), (math.inf, 3.0)], count=3.0, sum=4.0)


def test_quantile_in_the_first_bucket_interpolates_from_zero() -> None:
    assert quantile(hist([(0.5, 10.0), (1.0, 20.0), (math.inf, 20.0)]), 0.25) == pytest.approx(0.25)


def test_quantile_in_the_inf_bucket_is_the_largest_finite_bound() -> None:
    all_slow = hist([(0.5, 0.0), (1.0, 0.0), (math.inf, 7.0)])
    assert quantile(all_slow, 0.5) == 1.0
    assert quantile(all_slow, 0.99) == 1.0
    tail = hist([(0.5, 90.0), (1.0, 95.0), (math.inf, 100.0)])
    assert quantile(tail, 0.99) == 1.0
    assert quantile(tail, 0.95) == 1.0  # rank 95 is still in (0.5, 1.0]: its upper end


def test_quantile_of_nothing_is_none() -> None:
    assert quantile(hist([(0.5, 0.0), (1.0, 0.0), (math.inf, 0.0)]), 0.5) is None
    assert quantile(hist([(math.inf, 5.0)]), 0.5) is None  # no finite bound to report
    assert quantile(Histogram(buckets=[(0.5, 1.0), (1.0, 2.0)], count=2.0, sum=1.0), 0.5) is None


def test_quantile_edges_and_bad_q() -> None:
    h = hist([(0.5, 0.0), (1.0, 10.0), (math.inf, 10.0)])
    assert quantile(h, 0.0) == 0.0  # rank 0 meets the empty first bucket: its start
    assert quantile(h, 1.0) == 1.0
    assert quantile(hist([(-1.0, 4.0), (1.0, 8.0), (math.inf, 8.0)]), 0.25) == -1.0
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        quantile(h, 95)


def test_quantile_tolerates_non_monotonic_buckets() -> None:
    # 30 then 25: a torn scrape. The running maximum keeps the answer inside the bucket with the observations.
    h = hist([(1.0, 30.0), (2.0, 25.0), (4.0, 40.0), (math.inf, 40.0)])
    # rank 36 lies in (2, 4], which holds observations 30..40 (not 25..40): 2 + 2 × 6/10.
    assert quantile(h, 0.9) == pytest.approx(3.2)


def test_delta_between_two_scrapes_gives_the_window() -> None:
    older = Histogram(buckets=[(0.5, 10.0), (1.0, 60.0), (math.inf, 100.0)], count=100.0, sum=112.75)
    newer = Histogram(buckets=[(0.5, 10.0), (1.0, 70.0), (math.inf, 130.0)], count=130.0, sum=170.75)
    window = delta(newer, older)
    assert window == Histogram(buckets=[(0.5, 0.0), (1.0, 10.0), (math.inf, 30.0)], count=30.0, sum=58.0)
    # The window's p50 is in +Inf (20 of 30 slow), whatever the first 100 requests looked like.
    assert quantile(window, 0.5) == 1.0
    assert quantile(newer, 0.5) == pytest.approx(0.5 + 0.5 * 55 / 60)


def test_delta_of_the_same_scrape_is_empty() -> None:
    h = histogram(parse(VLLM_METRICS), "vllm:e2e_request_latency_seconds")
    assert h is not None
    window = delta(h, h)
    assert window.count == 0.0
    assert all(count == 0.0 for _, count in window.buckets)
    assert quantile(window, 0.5) is None


def test_delta_after_a_restart_is_the_newer_scrape() -> None:
    older = Histogram(buckets=[(1.0, 50.0), (math.inf, 100.0)], count=100.0, sum=80.0)
    newer = Histogram(buckets=[(1.0, 3.0), (math.inf, 4.0)], count=4.0, sum=2.5)
    assert delta(newer, older) == newer


def test_delta_with_a_bucket_new_since_the_older_scrape() -> None:
    older = Histogram(buckets=[(1.0, 5.0), (math.inf, 5.0)], count=5.0, sum=2.0)
    newer = Histogram(buckets=[(0.5, 1.0), (1.0, 6.0), (math.inf, 8.0)], count=8.0, sum=5.0)
    window = delta(newer, older)
    assert window.buckets == [(0.5, 1.0), (1.0, 1.0), (math.inf, 3.0)]
    assert (window.count, window.sum) == (3.0, 3.0)


def test_escaped_label_values() -> None:
    text = 'm{path="C:\\\\models\\\\x",quote="say \\"hi\\"",multi="a\\nb",odd="\\t"} 1\n'
    [sample] = parse(text)
    assert sample.label("path") == "C:\\models\\x"
    assert sample.label("quote") == 'say "hi"'
    assert sample.label("multi") == "a\nb"
    assert sample.label("odd") == "\\t"  # not a Prometheus escape: kept as written


def test_label_value_with_braces_commas_and_hash() -> None:
    [sample] = parse('m{a="x,y}",b="# not a comment", } 2.5\n')
    assert sample.labels == (("a", "x,y}"), ("b", "# not a comment"))
    assert sample.value == 2.5


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("m +Inf", math.inf),
        ("m -Inf", -math.inf),
        ("m 1.5e-3", 0.0015),
        ("m 2E+2", 200.0),
        ("m -0.25", -0.25),
        ("m 7", 7.0),
        ("m 7 1700000000000", 7.0),
        ('m{a="b"} 7 -12', 7.0),
        ("m\t7", 7.0),
        ('m 3 # {trace_id="abc"} 1.0', 3.0),
    ],
)
def test_values_and_timestamps(line: str, value: float) -> None:
    [sample] = parse(line)
    assert sample.value == value


def test_nan_value() -> None:
    [sample] = parse("m NaN")
    assert math.isnan(sample.value)


def test_garbage_lines_are_skipped_and_the_rest_parses() -> None:
    text = "\n".join(
        [
            "vllm:num_requests_running 1",
            "this is not a metric",
            '{le="1"} 3',
            'm{a="unterminated} 1',
            "m{a=b} 1",
            'm{1a="x"} 1',
            'm{a="x"',
            "m",
            "m 1_000",
            "m one",
            "m 1 2 3",
            "m 1 1.5",
            'm{a="x"}1',
            'm{a="x" b="y"} 1',
            "m 1 \\",
            "\x00\xff",
            "   ",
            "# TYPE broken",
            "# EOF",
            "vllm:num_requests_waiting 4",
        ]
    )
    samples = parse(text)
    assert [(s.name, s.value) for s in samples] == [
        ("vllm:num_requests_running", 1.0),
        ("vllm:num_requests_waiting", 4.0),
    ]


def test_crlf_and_empty_text() -> None:
    assert parse("") == []
    assert parse('a 1\r\nb{x="y"} 2\r\n') == [Sample("a", (), 1.0), Sample("b", (("x", "y"),), 2.0)]


def test_samples_are_hashable_and_label_order_does_not_matter() -> None:
    [one, two] = parse('m{b="2",a="1"} 1\nm{a="1",b="2"} 1\n')
    assert one == two
    assert len({one, two}) == 1
