"""Jetson (Tegra) boxes through sysfs: board model, thermal zones, INA3221 power rails, nvpmodel.

NVML on Jetson answers "not supported" for most calls, so power and temperature come from here.
`root` is "/" on the box and a fake tree in tests (jetson_stats' pattern).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from appliance.hardware.facts import PowerRail, TegraFacts, TemperatureReading


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip("\x00 \n")
    except OSError:
        return None


def board_model(root: Path = Path("/")) -> str | None:
    return _read(root / "proc/device-tree/model")


def is_tegra(root: Path = Path("/")) -> bool:
    model = board_model(root) or ""
    return "jetson" in model.lower() or (root / "etc/nv_tegra_release").exists()


def thermal_zones(root: Path = Path("/")) -> tuple[TemperatureReading, ...]:
    zones = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        kind, raw = _read(zone / "type"), _read(zone / "temp")
        if kind is None or raw is None or not raw.lstrip("-").isdigit():
            continue
        temp_c = int(raw) / 1000.0
        if temp_c <= -40:  # Tegra reports -256 °C for a zone that is switched off
            continue
        zones.append(TemperatureReading("tegra", kind, temp_c))
    return tuple(zones)


def power_rails(root: Path = Path("/")) -> tuple[PowerRail, ...]:
    """INA3221 rails: label, millivolts and milliamps per channel, as the hwmon driver shows."""
    rails = []
    for hwmon in sorted((root / "sys/bus/i2c/drivers/ina3221").glob("*/hwmon/hwmon*")):
        for label_file in sorted(hwmon.glob("in*_label")):
            channel = re.sub(r"\D", "", label_file.name)
            label = _read(label_file)
            if not label or label.lower().startswith("sum of"):
                continue
            millivolts = _number(_read(hwmon / f"in{channel}_input"))
            milliamps = _number(_read(hwmon / f"curr{channel}_input"))
            volts = None if millivolts is None else millivolts / 1000.0
            amps = None if milliamps is None else milliamps / 1000.0
            watts = None if volts is None or amps is None else round(volts * amps, 3)
            rails.append(PowerRail(label, volts, amps, watts))
    return tuple(rails)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def nvpmodel_mode(runner: str | None = None) -> tuple[str | None, str | None]:
    """The current power mode from `nvpmodel -q`, or None and why not."""
    command = runner or shutil.which("nvpmodel")
    if command is None:
        return None, "nvpmodel is not installed"
    try:
        output = subprocess.run([command, "-q"], capture_output=True, text=True, timeout=5,
                                check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvpmodel -q failed: {exc}"
    match = re.search(r"NV Power Mode:\s*(.+)", output)
    return (match.group(1).strip(), None) if match else (None, "nvpmodel -q printed no mode")


def probe_tegra(root: Path = Path("/"), nvpmodel: str | None = None) -> TegraFacts | None:
    """Jetson facts, or None on a box that is not a Jetson."""
    if not is_tegra(root):
        return None
    missing: dict[str, str] = {}
    mode, why = nvpmodel_mode(nvpmodel)
    if why:
        missing["nvpmodel_mode"] = why
    rails = power_rails(root)
    if not rails:
        missing["power_rails"] = "no INA3221 power monitor found in sysfs"
    zones = thermal_zones(root)
    if not zones:
        missing["thermal_zones"] = "no readable thermal zones"
    return TegraFacts(board_model(root), mode, zones, rails, missing)
