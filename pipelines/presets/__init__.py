"""Ready-made flow settings, as TOML files: `gpt2lab train --config cpu-tiny` finds them
by name (any other `--config` is a path to your own file)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def preset_path(name_or_path: Path) -> Path:
    """`name_or_path` itself if it is a file, else the preset of that name if one ships."""
    if name_or_path.exists() or name_or_path.suffix:
        return name_or_path
    shipped = resources.files("pipelines.presets").joinpath(f"{name_or_path.name}.toml")
    return Path(str(shipped)) if shipped.is_file() else name_or_path


def preset_names() -> list[str]:
    folder = resources.files("pipelines.presets")
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )
