"""Build the plugin archive (.mbp): maubot.yaml, the rtcbot package and the extra files.

Only what maubot loads goes in: no __pycache__, no tests, no tooling.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from .paths import ROOT


def _meta_value(meta: str, key: str) -> str:
    m = re.search(rf"^{key}:\s*(\S+)\s*$", meta, re.MULTILINE)
    if not m:
        raise ValueError(f"maubot.yaml has no {key}")
    return m.group(1)


def build_mbp(out_dir: Path = ROOT / "build") -> Path:
    meta = (ROOT / "maubot.yaml").read_text()
    plugin_id, version = _meta_value(meta, "id"), _meta_value(meta, "version")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{plugin_id}-v{version}.mbp"
    files = [ROOT / "maubot.yaml", ROOT / "base-config.yaml"]
    files += sorted(p for p in (ROOT / "rtcbot").rglob("*.py") if "__pycache__" not in p.parts)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, path.relative_to(ROOT).as_posix())
    return out


if __name__ == "__main__":
    path = build_mbp()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    print(f"{path.relative_to(ROOT)}: {len(names)} files")
    sys.exit(0)
