"""GPUs for local jobs: each running job gets its own device(s) through ``CUDA_VISIBLE_DEVICES``.

The devices are those the runner's own ``CUDA_VISIBLE_DEVICES`` lists when it
is set (indices, ``GPU-`` UUIDs or MIG names, as CUDA takes them), else those
the NVIDIA driver reports. A job gets ``--gpus-per-job`` devices (default 1
where there are any): the least-used ones, so jobs get devices of their own
while there are enough and share them round-robin when there are more jobs
than devices. ``--gpus-per-job 0`` hides every GPU from the jobs. A row that
sets ``env:CUDA_VISIBLE_DEVICES`` keeps what it set.
"""
from __future__ import annotations

import os

VAR = "CUDA_VISIBLE_DEVICES"
DRIVER_GPUS = "/proc/driver/nvidia/gpus"


def visible_devices(environ: dict | None = None) -> list[str]:
    """The devices jobs may use: the runner's ``CUDA_VISIBLE_DEVICES``, else the driver's GPUs."""
    environ = os.environ if environ is None else environ
    if VAR in environ:
        return [d.strip() for d in environ[VAR].split(",") if d.strip()]
    try:
        return [str(i) for i in range(len(os.listdir(DRIVER_GPUS)))]
    except OSError:
        return []


class DevicePool:
    def __init__(self, devices: list[str], per_job: int | None = None):
        if per_job is not None and per_job < 0:
            raise ValueError(f"--gpus-per-job must be 0 or more, not {per_job}")
        self.devices = list(devices)
        self.per_job = (1 if self.devices else 0) if per_job is None else per_job
        self.assign = bool(self.devices) or per_job is not None     # nothing to do without GPUs
        if self.per_job > len(self.devices) and self.per_job > 0:
            raise ValueError(f"--gpus-per-job {self.per_job}, but only {len(self.devices)} device(s) are "
                             f"visible ({','.join(self.devices) or 'none'})")
        self.load = {d: 0 for d in self.devices}

    def take(self) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` of a job that starts now (None: leave it alone)."""
        if not self.assign:
            return None
        chosen = sorted(self.devices, key=lambda d: (self.load[d], self.devices.index(d)))[:self.per_job]
        chosen.sort(key=self.devices.index)
        for d in chosen:
            self.load[d] += 1
        return ",".join(chosen)

    def give(self, value: str | None) -> None:
        """The job that had ``value`` ended."""
        for d in (value or "").split(","):
            if d in self.load:
                self.load[d] -= 1
