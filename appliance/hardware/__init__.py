"""Hardware facts and telemetry: host (psutil), NVIDIA (NVML), Jetson (Tegra sysfs).

Readers never raise for a missing piece: a reading that cannot be had is None, and the reason
is recorded in the `unavailable` mapping of the object that would have held it.
"""
