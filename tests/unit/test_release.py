"""`make release`: one version everywhere, notes from the changelog, a reproducible archive."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from rtcbot.version import __version__
from rtcbot_stack.build import build_mbp
from rtcbot_stack.paths import ROOT
from rtcbot_stack.release import ReleaseError, make_release, release_notes


def test_the_version_is_one_and_the_changelog_has_its_section() -> None:
    meta = (ROOT / "maubot.yaml").read_text()
    assert f"\nversion: {__version__}\n" in meta
    notes = release_notes((ROOT / "CHANGELOG.md").read_text(), __version__)
    assert notes.startswith(f"# rtcbot {__version__}\n") and "### " in notes


def test_the_archive_is_the_same_bytes_when_built_again(tmp_path: Path) -> None:
    first = build_mbp(tmp_path / "a")
    second = build_mbp(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
    assert {"maubot.yaml", "base-config.yaml", "LICENSE", "rtcbot/__init__.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_a_release_has_the_archive_its_checksum_and_its_notes(tmp_path: Path) -> None:
    archive, checksum, notes = make_release(out_dir=tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert checksum.read_text() == f"{digest}  {archive.name}\n"
    assert archive.name == f"dev.rtcbot-v{__version__}.mbp"
    assert notes.read_text() == release_notes((ROOT / "CHANGELOG.md").read_text(), __version__)


def test_a_release_is_refused_without_notes_or_with_two_versions(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("maubot.yaml", "base-config.yaml", "LICENSE"):
        shutil.copy(ROOT / name, root / name)
    (root / "CHANGELOG.md").write_text("# Changelog\n\n## [0.0.1] — old\n- something\n")
    with pytest.raises(ReleaseError, match=f"no section for {__version__}"):
        make_release(root, tmp_path / "out")
    (root / "maubot.yaml").write_text(
        (ROOT / "maubot.yaml").read_text().replace(f"version: {__version__}", "version: 9.9.9")
    )
    with pytest.raises(ReleaseError, match=r"maubot\.yaml says 9\.9\.9"):
        make_release(root, tmp_path / "out")
