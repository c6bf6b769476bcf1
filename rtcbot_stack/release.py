"""`make release`: the plugin archive, its checksum and its release notes, in build/release/.

Refuses (exit 1, one sentence) when the version is not the same in maubot.yaml and
rtcbot/version.py, or when CHANGELOG.md has no section for it: a release says what changed.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from rtcbot.version import __version__

from .build import _meta_value, build_mbp
from .paths import ROOT


class ReleaseError(Exception):
    pass


def release_notes(changelog: str, version: str) -> str:
    """The CHANGELOG section of `version` (`## [0.2.0] …` up to the next `## `)."""
    m = re.search(
        rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## |\Z)",
        changelog,
        re.MULTILINE | re.DOTALL,
    )
    if m is None or not m.group(1).strip():
        raise ReleaseError(f"CHANGELOG.md has no section for {version}: write what changed first")
    return f"# rtcbot {version}\n\n{m.group(1).strip()}\n"


def make_release(root: Path = ROOT, out_dir: Path | None = None) -> list[Path]:
    version = _meta_value((root / "maubot.yaml").read_text(), "version")
    if version != __version__:
        raise ReleaseError(
            f"maubot.yaml says {version} but rtcbot/version.py says {__version__}: make them equal"
        )
    notes = release_notes((root / "CHANGELOG.md").read_text(), version)
    out = out_dir or root / "build" / "release"
    archive = build_mbp(out, root)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    checksum = archive.with_name(archive.name + ".sha256")
    checksum.write_text(f"{digest}  {archive.name}\n")  # the format `sha256sum -c` reads
    notes_path = out / f"RELEASE_NOTES-v{version}.md"
    notes_path.write_text(notes)
    return [archive, checksum, notes_path]


if __name__ == "__main__":
    try:
        made = make_release()
    except ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        sys.exit(1)
    for path in made:
        print(path.relative_to(ROOT))
