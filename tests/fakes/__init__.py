"""Fakes of the outside world (psutil, NVML, /proc and /sys), built from recorded readings."""
