"""nvidia-smi parsing and the "does green fit" preflight check. Pure: no I/O.

The host runs `query_argv()`; this module turns its output (or its failure) into figures and messages, and decides
whether a colour's `--gpu-memory-utilization` fits next to what already holds each GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

QUERY_FIELDS = "index,uuid,name,memory.total,memory.used,memory.free"

# nvidia-smi prints these for a value the card or driver cannot report.
_NOT_A_NUMBER = ("[N/A]", "[Not Supported]", "N/A", "[Unknown Error]", "[GPU is lost]")
_MEMORY_FIELDS = ("memory.total", "memory.used", "memory.free")


class GpuQueryError(ValueError):
    """The output of `nvidia-smi --query-gpu` could not be read as GPU figures."""


def query_argv() -> list[str]:
    """The command that `parse_query` reads: one CSV line per GPU, no header, figures in MiB."""
    return ["nvidia-smi", f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi reports it; memory figures in MiB."""

    index: int
    uuid: str
    name: str
    total_mib: int
    used_mib: int
    free_mib: int

    @property
    def usable_mib(self) -> int:
        # What CUDA can allocate: used + free. memory.total also counts memory the driver reserves, and vLLM's
        # --gpu-memory-utilization is a fraction of CUDA's total (an idle H200: 143771 total, 143156 usable).
        return self.used_mib + self.free_mib


def _error_text_message(line: str) -> str | None:
    """The message for a line that is one of nvidia-smi's error texts, or None when it is not one."""
    lowered = line.lower()
    if "is not a valid field to query" in lowered:
        return (
            f"nvidia-smi refused the query: {line.strip()} The NVIDIA driver on the host does not know a field "
            f"bgdeploy asks for ({QUERY_FIELDS}); update the NVIDIA driver on the host"
        )
    if "no devices were found" in lowered:
        return (
            "nvidia-smi found no GPU (No devices were found): the driver sees no card, or the GPU asked for does "
            "not exist; run `nvidia-smi -L` on the host, and fix the gpus in the spec (or set gpus: [] for CPU-only)"
        )
    if "couldn't communicate with the nvidia driver" in lowered or "driver not loaded" in lowered:
        return (
            f"nvidia-smi cannot reach the NVIDIA driver: {line.strip()} Load the driver on the host "
            "(reboot, or `modprobe nvidia`) and check that `nvidia-smi` works there"
        )
    if "command not found" in lowered or "no such file or directory" in lowered:
        return "nvidia-smi not found on the host: install the NVIDIA driver, or set gpus: [] for CPU-only"
    return None


def _memory(value: str, field: str, line_no: int, line: str) -> int:
    text = value.strip()
    if text in _NOT_A_NUMBER:
        raise GpuQueryError(
            f"nvidia-smi line {line_no} reports {field} as {text!r} ({line.strip()!r}): this GPU or its driver does "
            "not expose memory figures, so bgdeploy cannot check that the model fits; use a driver that reports "
            "memory (vGPU and MIG setups may not), or set gpus: [] for CPU-only"
        )
    # Tolerate output taken without `nounits` ("143771 MiB"): the figure is the same.
    if text.endswith(" MiB"):
        text = text[: -len(" MiB")].strip()
    if not text.isdigit():
        raise GpuQueryError(
            f"nvidia-smi line {line_no}: {field} is {text!r}, not a whole number of MiB ({line.strip()!r}); "
            f"run `{' '.join(query_argv())}` on the host to see what it prints, and report it as a bgdeploy bug"
        )
    return int(text)


def parse_query(text: str) -> list[Gpu]:
    """Parse `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free` (csv, noheader, nounits).

    Extra columns after the six (utilization, driver_version, ...) are ignored. Blank lines are skipped; an empty
    output gives an empty list. Raises GpuQueryError for nvidia-smi error texts and for lines that are not figures.
    """
    gpus: list[Gpu] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        known = _error_text_message(line)
        if known is not None:
            raise GpuQueryError(known)
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6:
            raise GpuQueryError(
                f"nvidia-smi line {line_no} has {len(fields)} fields, expected at least 6 ({QUERY_FIELDS}): "
                f"{line!r}; run `{' '.join(query_argv())}` on the host to see what it prints"
            )
        index_text, uuid, name = fields[0], fields[1], fields[2]
        if not index_text.isdigit():
            raise GpuQueryError(
                f"nvidia-smi line {line_no}: the GPU index is {index_text!r}, not a number ({line!r}); "
                f"run `{' '.join(query_argv())}` on the host to see what it prints"
            )
        total, used, free = (_memory(fields[3 + i], f, line_no, line) for i, f in enumerate(_MEMORY_FIELDS))
        gpus.append(Gpu(int(index_text), uuid, name, total, used, free))
    return gpus


def parse_failure(output: str, exit_code: int) -> str:
    """A human message for an nvidia-smi run that exited non-zero (or whose output was an error text)."""
    lowered = output.lower()
    first = next((line.strip() for line in output.splitlines() if line.strip()), "")
    if exit_code == 127 or "command not found" in lowered or "nvidia-smi: not found" in lowered:
        return "nvidia-smi not found on the host: install the NVIDIA driver, or set gpus: [] for CPU-only"
    if exit_code == 6 or "no devices were found" in lowered:
        return (
            f"nvidia-smi found no GPU (No devices were found, exit {exit_code}): the driver sees no card, or the GPU "
            "asked for does not exist; run `nvidia-smi -L` on the host and fix the gpus in the spec "
            "(or set gpus: [] for CPU-only)"
        )
    if exit_code == 9 or "couldn't communicate with the nvidia driver" in lowered:
        return (
            f"the NVIDIA driver is not loaded on the host (nvidia-smi exit {exit_code}"
            + (f": {first}" if first else "")
            + "); load it (reboot, or `modprobe nvidia`) and check that `nvidia-smi` works there"
        )
    return f"nvidia-smi failed (exit {exit_code}): {first or 'no output'}"


@dataclass(frozen=True)
class GpuFit:
    """Whether one instance fits on one GPU; figures in MiB."""

    index: int
    needed_mib: int
    free_mib: int
    usable_mib: int
    fits: bool


def _needed_mib(utilization: float, usable_mib: int) -> int:
    # Decimal of the shortest repr keeps 0.7 × 100 at 70 (binary floats give 70.00000000000001 → ceil 71).
    return math.ceil(Decimal(repr(utilization)) * usable_mib)


def _largest_fitting(free_mib: int, usable_mib: int) -> Decimal:
    # ceil(k/100 × usable) <= free  ⇔  k × usable <= 100 × free: whole-number math, so no rounding surprises.
    return Decimal((100 * free_mib) // usable_mib) / 100 if usable_mib > 0 else Decimal(0)


def _host_gpus(gpus: list[Gpu]) -> str:
    listed = ", ".join(str(g.index) for g in gpus)
    if not gpus:
        return "the host has no GPU (nvidia-smi lists none)"
    if len(gpus) == 1:
        return f"the host has GPU {gpus[0].index} only (nvidia-smi lists {listed})"
    return f"the host has {len(gpus)} GPUs (nvidia-smi lists {listed})"


def check_fit(
    gpus: list[Gpu], wanted: list[int], utilization: float, *, colour: str = "green"
) -> tuple[list[GpuFit], list[str]]:
    """Check that `colour` can start on each wanted GPU with `utilization` of its memory.

    vLLM refuses to start when free memory is below utilization × the total CUDA reports, so a GPU fits when
    free_mib >= ceil(utilization × usable_mib). Returns one GpuFit per wanted GPU that exists, and one blocker
    message per GPU that is missing or too full (all of them, not just the first).
    """
    by_index = {g.index: g for g in gpus}
    fits: list[GpuFit] = []
    blockers: list[str] = []
    for index in dict.fromkeys(wanted):  # the same GPU twice is one check, in the order given
        gpu = by_index.get(index)
        if gpu is None:
            blockers.append(f"{colour} wants GPU {index}, but {_host_gpus(gpus)}; fix gpus.{colour}")
            continue
        usable = gpu.usable_mib
        needed = _needed_mib(utilization, usable)
        ok = gpu.free_mib >= needed
        fits.append(GpuFit(index=index, needed_mib=needed, free_mib=gpu.free_mib, usable_mib=usable, fits=ok))
        if ok:
            continue
        largest = _largest_fitting(gpu.free_mib, usable)
        if largest > 0:
            fix = (
                "free memory on it (stop what else uses it) or lower runtime.gpu_memory_utilization "
                f"to {largest:.2f} or less"
            )
        else:
            fix = "free memory on it (stop what else uses it): not even 0.01 of it is free"
        blockers.append(
            f"GPU {index} ({gpu.name}): {colour} needs {utilization:g} × {usable} MiB = {needed} MiB "
            f"but only {gpu.free_mib} MiB are free; {fix}"
        )
    return fits, blockers


def format_gpu(g: Gpu) -> str:
    """A one-line summary: "GPU 0 NVIDIA H200: 41487 / 143771 MiB used, 101670 MiB free"."""
    return f"GPU {g.index} {g.name}: {g.used_mib} / {g.total_mib} MiB used, {g.free_mib} MiB free"
