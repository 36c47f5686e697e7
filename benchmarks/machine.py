"""The machine a benchmark ran on, printed with its figures: the CPU model and its bf16 flags."""

from __future__ import annotations

from pathlib import Path


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    bf16 = [f for f in flags if "bf16" in f or f.startswith("amx")]
    return f"{model}; bf16 flags: {', '.join(bf16) or 'none'}"
