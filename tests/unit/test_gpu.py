"""nvidia-smi parsing and the fit check, against real output captured on an H200 host (tests/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgdeploy.plan.gpu import (
    QUERY_FIELDS,
    Gpu,
    GpuFit,
    GpuQueryError,
    check_fit,
    format_gpu,
    parse_failure,
    parse_query,
    query_argv,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi" / "h200"


def capture(name: str) -> tuple[str, int | None]:
    """The fixture's output and its exit code: the capture appended a last `rc=N` line that nvidia-smi never printed."""
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    if lines and lines[-1].startswith("rc="):
        return "".join(lines[:-1]), int(lines[-1].strip().removeprefix("rc="))
    return "".join(lines), None


def test_query_argv_asks_for_the_fields_parse_query_reads() -> None:
    assert query_argv() == [
        "nvidia-smi",
        "--query-gpu=index,uuid,name,memory.total,memory.used,memory.free",
        "--format=csv,noheader,nounits",
    ]
    assert QUERY_FIELDS == "index,uuid,name,memory.total,memory.used,memory.free"


def test_busy_card_with_extra_columns_parses() -> None:
    text, _ = capture("query-gpu-busy.csv")
    assert parse_query(text) == [
        Gpu(0, "GPU-9d56a493-cf75-7d34-c20d-2a1c78a78ed3", "NVIDIA H200", 143771, 41487, 101670),
    ]
    [gpu] = parse_query(text)
    assert gpu.usable_mib == 143157
    assert format_gpu(gpu) == "GPU 0 NVIDIA H200: 41487 / 143771 MiB used, 101670 MiB free"


def test_split_card_parses() -> None:
    text, _ = capture("query-gpu-split.csv")
    [gpu] = parse_query(text)
    assert (gpu.index, gpu.uuid, gpu.name) == (0, "GPU-4b452ebc-bed7-4cd7-3df0-4ed7219a035b", "NVIDIA H200")
    assert (gpu.total_mib, gpu.used_mib, gpu.free_mib, gpu.usable_mib) == (143771, 129895, 13262, 143157)


def test_idle_card_by_uuid_parses_and_usable_is_below_total() -> None:
    text, rc = capture("query-gpu-by-uuid.txt")
    assert rc == 0
    [gpu] = parse_query(text)
    assert (gpu.total_mib, gpu.used_mib, gpu.free_mib) == (143771, 0, 143156)
    # CUDA can allocate what torch saw (150109880320 bytes ≈ 143156 MiB), not the nominal total.
    assert gpu.usable_mib == 143156 == round(150109880320 / 2**20)
    assert gpu.usable_mib < gpu.total_mib


def test_trailing_spaces_and_blank_lines_are_tolerated() -> None:
    text = "\n  0, GPU-a, NVIDIA H200, 143771, 0, 143156  \n\n"
    assert parse_query(text) == [Gpu(0, "GPU-a", "NVIDIA H200", 143771, 0, 143156)]
    assert parse_query("") == []
    assert parse_query("\n \n") == []


def test_two_gpus_parse_and_fit_independently() -> None:
    text = (
        "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 70000, 11000\n1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 0, 81000\n"
    )
    gpus = parse_query(text)
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[1] == Gpu(1, "GPU-bbbb", "NVIDIA H100 80GB HBM3", 81559, 0, 81000)
    fits, blockers = check_fit(gpus, [0, 1], 0.5)
    assert [(f.index, f.needed_mib, f.fits) for f in fits] == [(0, 40500, False), (1, 40500, True)]
    assert len(blockers) == 1
    assert blockers[0].startswith("GPU 0 (NVIDIA H100 80GB HBM3): green needs 0.5 × 81000 MiB = 40500 MiB")
    assert "to 0.13 or less" in blockers[0]  # 11000 / 81000 = 0.1358


def test_idle_card_fits_045_and_09() -> None:
    [gpu] = parse_query(capture("query-gpu-by-uuid.txt")[0])
    assert check_fit([gpu], [0], 0.45) == (
        [GpuFit(index=0, needed_mib=64421, free_mib=143156, usable_mib=143156, fits=True)],
        [],
    )
    fits, blockers = check_fit([gpu], [0], 0.9)
    assert fits == [GpuFit(index=0, needed_mib=128841, free_mib=143156, usable_mib=143156, fits=True)]
    assert blockers == []


def test_a_third_045_does_not_fit_on_the_split_card() -> None:
    [gpu] = parse_query(capture("query-gpu-split.csv")[0])
    fits, blockers = check_fit([gpu], [0], 0.45)
    assert fits == [GpuFit(index=0, needed_mib=64421, free_mib=13262, usable_mib=143157, fits=False)]
    assert blockers == [
        "GPU 0 (NVIDIA H200): green needs 0.45 × 143157 MiB = 64421 MiB but only 13262 MiB are free; free memory "
        "on it (stop what else uses it) or lower runtime.gpu_memory_utilization to 0.09 or less"
    ]


def test_suggested_utilisation_really_fits_and_the_next_step_does_not() -> None:
    [gpu] = parse_query(capture("query-gpu-split.csv")[0])
    assert check_fit([gpu], [0], 0.09)[0][0].fits
    assert not check_fit([gpu], [0], 0.10)[0][0].fits


def test_busy_card_fits_green_at_07_but_not_at_075() -> None:
    [gpu] = parse_query(capture("query-gpu-busy.csv")[0])
    assert check_fit([gpu], [0], 0.7)[0][0].fits  # 100210 MiB needed, 101670 free
    fits, blockers = check_fit([gpu], [0], 0.75, colour="blue")
    assert not fits[0].fits
    assert blockers[0].startswith("GPU 0 (NVIDIA H200): blue needs 0.75 × 143157 MiB = 107368 MiB")
    assert blockers[0].endswith("to 0.71 or less")


def test_needed_is_exact_for_round_products() -> None:
    # 0.7 × 100 in binary floats is 70.00000000000001; vLLM's own arithmetic must not cost a MiB more than that.
    gpu = Gpu(0, "GPU-x", "Test", 110, 30, 70)
    assert check_fit([gpu], [0], 0.7)[0] == [GpuFit(0, 70, 70, 100, True)]


def test_no_memory_free_at_all_says_so_without_suggesting_zero() -> None:
    gpu = Gpu(0, "GPU-x", "NVIDIA H200", 143771, 143157, 0)
    _, [blocker] = check_fit([gpu], [0], 0.45)
    assert "only 0 MiB are free" in blocker
    assert "gpu_memory_utilization" not in blocker
    assert "not even 0.01" in blocker


def test_missing_index_is_a_blocker_naming_what_the_host_has() -> None:
    [gpu] = parse_query(capture("query-gpu-busy.csv")[0])
    fits, blockers = check_fit([gpu], [3], 0.45)
    assert fits == []
    assert blockers == ["green wants GPU 3, but the host has GPU 0 only (nvidia-smi lists 0); fix gpus.green"]


def test_every_problem_is_reported_not_just_the_first() -> None:
    [gpu] = parse_query(capture("query-gpu-split.csv")[0])
    fits, blockers = check_fit([gpu], [3, 0, 5], 0.45, colour="blue")
    assert [f.index for f in fits] == [0]
    assert len(blockers) == 3
    assert blockers[0].startswith("blue wants GPU 3")
    assert blockers[1].startswith("GPU 0 (NVIDIA H200): blue needs")
    assert blockers[2].endswith("fix gpus.blue")


def test_missing_index_on_a_multi_gpu_and_a_gpu_less_host() -> None:
    gpus = [Gpu(0, "a", "H", 10, 0, 10), Gpu(1, "b", "H", 10, 0, 10)]
    assert check_fit(gpus, [2], 0.5)[1] == [
        "green wants GPU 2, but the host has 2 GPUs (nvidia-smi lists 0, 1); fix gpus.green"
    ]
    assert check_fit([], [0], 0.5)[1] == [
        "green wants GPU 0, but the host has no GPU (nvidia-smi lists none); fix gpus.green"
    ]


def test_no_wanted_gpus_is_nothing_to_check() -> None:
    [gpu] = parse_query(capture("query-gpu-split.csv")[0])
    assert check_fit([gpu], [], 0.9) == ([], [])


def test_bad_field_error_text_raises_and_explains() -> None:
    text, rc = capture("query-gpu-badfield.txt")
    assert rc == 2
    with pytest.raises(GpuQueryError, match=r'Field "no\.such\.field" is not a valid field to query\.') as info:
        parse_query(text)
    assert "update the NVIDIA driver" in str(info.value)
    assert parse_failure(text, rc) == 'nvidia-smi failed (exit 2): Field "no.such.field" is not a valid field to query.'


def test_missing_index_error_text_raises_and_explains() -> None:
    text, rc = capture("query-gpu-missing-index.txt")
    assert rc == 6
    with pytest.raises(GpuQueryError, match="No devices were found"):
        parse_query(text)
    message = parse_failure(text, rc)
    assert message.startswith("nvidia-smi found no GPU (No devices were found, exit 6)")
    assert "nvidia-smi -L" in message


@pytest.mark.parametrize("value", ["[N/A]", "[Not Supported]"])
def test_unreported_memory_raises(value: str) -> None:
    with pytest.raises(GpuQueryError, match=r"memory\.free as '\[") as info:
        parse_query(f"0, GPU-a, NVIDIA A100-SXM4-40GB MIG, 40960, 100, {value}\n")
    assert value in str(info.value)
    assert "line 1" in str(info.value)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("0, GPU-a, NVIDIA H200, 143771", "has 4 fields, expected at least 6"),
        ("x, GPU-a, NVIDIA H200, 143771, 0, 143156", "the GPU index is 'x'"),
        ("0, GPU-a, NVIDIA H200, 143771, 0, lots", "memory.free is 'lots'"),
        ("0, GPU-a, NVIDIA H200, 143771, -5, 143156", "memory.used is '-5'"),
    ],
)
def test_malformed_lines_raise_with_the_line(line: str, fragment: str) -> None:
    with pytest.raises(GpuQueryError, match="line 2") as info:
        parse_query("0, GPU-ok, NVIDIA H200, 143771, 0, 143156\n" + line + "\n")
    assert fragment in str(info.value)


def test_figures_with_units_are_still_read() -> None:
    assert parse_query("0, GPU-a, NVIDIA H200, 143771 MiB, 0 MiB, 143156 MiB") == [
        Gpu(0, "GPU-a", "NVIDIA H200", 143771, 0, 143156)
    ]


def test_driver_not_loaded_text_raises() -> None:
    text = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n"
    )
    with pytest.raises(GpuQueryError, match="modprobe nvidia"):
        parse_query(text)
    assert parse_failure(text, 9).startswith(
        "the NVIDIA driver is not loaded on the host (nvidia-smi exit 9: NVIDIA-SMI"
    )


@pytest.mark.parametrize(
    ("output", "rc"),
    [("bash: line 1: nvidia-smi: command not found\n", 127), ("sh: 1: nvidia-smi: not found\n", 127), ("", 127)],
)
def test_parse_failure_command_not_found(output: str, rc: int) -> None:
    assert parse_failure(output, rc) == (
        "nvidia-smi not found on the host: install the NVIDIA driver, or set gpus: [] for CPU-only"
    )


def test_parse_failure_other_exit_uses_the_first_line_or_says_no_output() -> None:
    assert parse_failure(
        "\n  Unable to determine the device handle for GPU0000:1B:00.0: Unknown Error\nmore\n", 15
    ) == ("nvidia-smi failed (exit 15): Unable to determine the device handle for GPU0000:1B:00.0: Unknown Error")
    assert parse_failure("", 1) == "nvidia-smi failed (exit 1): no output"
