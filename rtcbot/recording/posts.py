"""What the room gets when a recording ends: the summary and the files (or where they stay).

Shared by the normal end of a recording (recording/session.py) and the recovery of one a crash cut
off (recording/recovery.py), so both post the same kind of messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mautrix.types import AudioInfo, EventID, MediaMessageEventContent, MessageType, RoomID

from ..context import BotContext
from ..matrix.attachments import upload_for_room
from ..matrix.notices import NAME_LIMIT, md_escape
from ..media.recording_result import RecordedFile, RecordingResult
from .disk import kept_where


def fmt_s(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def _label(f: RecordedFile) -> str:
    return "Mix of everyone" if f.kind == "mix" else f"{f.display_name} ({f.device})"


async def post_recording(
    ctx: BotContext,
    room: RoomID,
    result: RecordingResult,
    reason_text: str = "",
    notes: list[str] | None = None,
) -> EventID:
    """The summary (who spoke, why it stopped, `notes`), then each file, mix first.
    Returns the summary's event (the recording's message: a transcript replies to it)."""
    why = {
        "max_duration": "it reached the maximum length",
        "sfu_lost": "the media server was unreachable for too long",
        "room_closed": "the call's media room was closed",
        "disk_full": "the disk is nearly full",
    }.get(result.reason, reason_text)
    people = [
        f"{md_escape(s.display_name, NAME_LIMIT)} {fmt_s(s.speaking_seconds)}"
        for s in result.speakers
    ]
    lines = [
        f"⏹️ Recording stopped{f' ({why})' if why else ''} after "
        f"{fmt_s(result.duration_ms / 1000)}"
        + (
            f", in {result.segments} parts (the media server was lost in between)"
            if result.segments > 1
            else ""
        )
        + ".",
        "Who spoke: " + (", ".join(people) if people else "nobody"),
    ]
    if result.undecrypted:  # an encrypted call: a key came late or never
        lines.append(
            "🔒 Audio I could not decrypt (not in the files): "
            + ", ".join(
                f"{md_escape(n, NAME_LIMIT)} {fmt_s(s)}"
                for n, s in sorted(result.undecrypted.items())
            )
        )
    if result.not_recorded:
        lines.append(
            "🚫 Not recorded (the recording already had as many speakers as "
            "recording.max_tracks allows): "
            + ", ".join(md_escape(n, NAME_LIMIT) for n in result.not_recorded)
        )
    if result.unencrypted:  # an encrypted call, a track without encryption: not trusted
        lines.append(
            "🔓 Sent without encryption into this encrypted call, so not recorded: "
            + ", ".join(
                f"{md_escape(n, NAME_LIMIT)} {fmt_s(s)}"
                for n, s in sorted(result.unencrypted.items())
            )
        )
    if result.media_gone_s is not None:  # the SFU stopped answering and never came back
        lines.append(
            "⚠️ The connection to the call's media server broke off; I noticed "
            f"{fmt_s(result.media_gone_s)} into the recording, and the files are silent from "
            "shortly before that on."
        )
    lines.extend(notes or ())
    settings = ctx.settings().recording
    limit = settings.max_upload_mb * 1024 * 1024
    if not result.files:
        lines.append("Nothing was recorded: nobody's audio reached me.")
        summary = await ctx.notices.send(room, "\n".join(lines))
    elif result.total_bytes <= limit:
        summary = await ctx.notices.send(room, "\n".join(lines))
        for f in sorted(result.files, key=lambda f: (f.kind != "mix", f.segment, f.display_name)):
            event = await upload_recording(ctx, room, f.path, _label(f), f.duration_ms)
            result.uploaded.append(f.path)
            result.posted_events.append(event)
    else:
        # The room's folder and the recording's name, never the absolute path (review L7).
        lines.append(
            f"The files ({result.total_bytes / 1e6:.1f} MB) are larger than the upload limit "
            f"and stay on my disk, in `{kept_where(result.files[0].path)}` of its "
            "recordings folder, "
            + (
                f"for {settings.retention_days} days."
                if settings.retention_days
                else "until my operator removes them."
            )
        )
        summary = await ctx.notices.send(room, "\n".join(lines))
    return summary


def drop_posted_files(ctx: BotContext, result: RecordingResult) -> None:
    """retention_days 0: the files are deleted once posted (and transcribed); files that were
    not uploaded (too large, or the upload failed) are kept (recording/retention.py). What was
    uploaded is recorded at the post, not decided again from the settings of now."""
    if ctx.settings().recording.retention_days == 0:
        for path in result.uploaded:
            path.unlink(missing_ok=True)


async def upload_recording(
    ctx: BotContext, room: RoomID, path: Path, label: str, duration_ms: int | None = None
) -> EventID:
    """One file as an m.audio message: encrypted (content.file) in an encrypted room."""
    data = await asyncio.to_thread(path.read_bytes)  # up to max_upload_mb: off the loop
    where = await upload_for_room(ctx.client, room, data, "audio/ogg", path.name)
    info = AudioInfo(mimetype="audio/ogg", size=len(data))
    if duration_ms is not None:
        info.duration = duration_ms
    content = MediaMessageEventContent(
        msgtype=MessageType.AUDIO,
        body=f"{label} — {path.name}",  # plain text: the label is not rendered
        **where,
        info=info,
    )
    content["filename"] = path.name
    return await ctx.client.send_message(room, content)
