"""Peak resident memory of a block of code, for the benchmarks that run each measurement in a subprocess."""

from __future__ import annotations

import resource
from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """`with PeakMemory() as m: ...` then `m.peak_mib`: the peak RSS reached inside, above the RSS at entry.

    On Linux ≥ 4.0 the kernel's high-water mark (VmHWM) is reset at entry, so the transient allocations of
    importing torch or making the inputs don't count; elsewhere `ru_maxrss` (peak of the whole process).
    """

    def __enter__(self) -> PeakMemory:
        self.before = _status_kib("VmRSS")
        self.method = "VmHWM" if self.before is not None and self._reset_hwm() else "ru_maxrss"
        if self.method == "ru_maxrss":
            self.before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        peak = (
            _status_kib("VmHWM")
            if self.method == "VmHWM"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        )
        self.peak_mib = (peak - self.before) / 1024

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS
            return _status_kib("VmHWM") is not None
        except OSError:
            return False
