"""A hardened systemd unit for `gemba serve`: no egress, read-only system, a memory cap."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance.config import Paths


def unit_text(paths: Paths, model_path: Path, memory_max_bytes: int, use_mlock: bool,
              user: str | None, uses_gpu: bool) -> str:
    writable = " ".join(str(p) for p in (paths.data_dir, paths.models_dir, paths.run_dir,
                                         paths.log_dir, paths.config_file.parent))
    lines = [
        "# Written by `gemba install apply --system`. Regenerate rather than edit.",
        "[Unit]",
        "Description=Gemba appliance daemon (on-premise LLM)",
        "After=local-fs.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={sys.executable} -m appliance serve",
        *(f"Environment={variable}" for variable in _environment(paths)),
        *( [f"User={user}"] if user else [] ),
        "Restart=on-failure",
        "RestartSec=5",
        "# Offline by construction: loopback only, no egress.",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        f"ReadWritePaths={writable}",
        *([f"ReadOnlyPaths={model_path.parent}"]
          if not model_path.parent.resolve().is_relative_to(paths.models_dir.resolve()) else []),
        "PrivateTmp=yes",
        f"PrivateDevices={'no' if uses_gpu else 'yes'}",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "SystemCallArchitectures=native",
        f"MemoryMax={memory_max_bytes}",
        *( ["LimitMEMLOCK=infinity"] if use_mlock else [] ),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def _environment(paths: Paths) -> list[str]:
    """Variables that make the service see exactly these paths."""
    home = paths.data_dir.parent
    if paths.models_dir == home / "models":
        variables = [f"GEMBA_HOME={home}"]
        default_config = home / "config.toml"
    else:
        variables = [f"XDG_CONFIG_HOME={paths.config_file.parent.parent}",
                     f"XDG_DATA_HOME={paths.data_dir.parent}",
                     f"XDG_STATE_HOME={paths.log_dir.parent.parent}"]
        default_config = paths.config_file.parent / "config.toml"
    if paths.config_file != default_config:
        variables.append(f"GEMBA_CONFIG={paths.config_file}")
    return variables
