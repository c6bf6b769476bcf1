"""Build the plugin archive (.mbp): maubot.yaml, the rtcbot package and the extra files.

Only what maubot loads goes in (no __pycache__, no tests, no tooling), and the licence that
comes with it. The archive is reproducible: the same sources give the same bytes (files in
order, one fixed timestamp), so a release's checksum can be checked by building it again.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from .paths import ROOT

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest: no build time in the bytes


def _meta_value(meta: str, key: str) -> str:
    m = re.search(rf"^{key}:\s*(\S+)\s*$", meta, re.MULTILINE)
    if not m:
        raise ValueError(f"maubot.yaml has no {key}")
    return m.group(1)


def build_mbp(out_dir: Path = ROOT / "build", root: Path = ROOT) -> Path:
    meta = (root / "maubot.yaml").read_text()
    plugin_id, version = _meta_value(meta, "id"), _meta_value(meta, "version")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{plugin_id}-v{version}.mbp"
    files = [root / "maubot.yaml", root / "base-config.yaml", root / "LICENSE"]
    files += sorted(p for p in (root / "rtcbot").rglob("*.py") if "__pycache__" not in p.parts)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return out


if __name__ == "__main__":
    path = build_mbp()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    print(f"{path.relative_to(ROOT)}: {len(names)} files")
    sys.exit(0)
