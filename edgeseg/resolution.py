"""`--resolution`: 320, 640, 1024, any multiple of 8 from 64, or HxW."""

from __future__ import annotations

from edgeseg.errors import ConfigError

STANDARD_RESOLUTIONS = (320, 640, 1024)
# Far beyond any edge camera's use; past it a mistyped number would try to allocate hundreds of GB.
MAX_SIDE = 4096


def parse_resolution(text: str | int) -> tuple[int, int]:
    """'320' -> (320, 320); '480x640' -> (480, 640) as (height, width)."""
    raw = str(text).lower().strip()
    parts = raw.split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--resolution {text}: expected a number such as 320 or HxW such as 480x640") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ConfigError(f"--resolution {text}: expected a number such as 320 or HxW such as 480x640")
    for v in values:
        if v < 64 or v % 8:
            raise ConfigError(f"--resolution {text}: each side must be a multiple of 8 and at least 64 "
                              f"(standard sizes: {', '.join(map(str, STANDARD_RESOLUTIONS))})")
        if v > MAX_SIDE:
            raise ConfigError(f"--resolution {text}: each side must be at most {MAX_SIDE} "
                              f"(standard sizes: {', '.join(map(str, STANDARD_RESOLUTIONS))})")
    return values[0], values[1]


def resolution_tag(hw: tuple[int, int]) -> str:
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"
