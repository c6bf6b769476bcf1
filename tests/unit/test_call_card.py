"""The call card: the log of a call's events, talk intervals, the text, the picture."""

from __future__ import annotations

import io
from dataclasses import replace
from zoneinfo import ZoneInfo

import numpy as np
from PIL import Image

from rtcbot.matrix.notices import md_escape
from rtcbot.media.talk_timeline import RECORDING, SPEAKERS, TalkTimeline
from rtcbot.media.timeline_image import (
    BACKGROUND,
    PRESENT,
    Row,
    color_of,
    draw_timeline,
)
from rtcbot.rtc.call_card import (
    CallLog,
    build_card,
    card_markdown,
    format_duration_precise,
    merge,
)
from rtcbot.rtc.session import CallEnded, CallStarted, MemberJoined, MemberLeft, RoomCalls

T0 = 1_780_000_000_000  # ms
ROOM, SLOT, APP = "!r:x", "m.call#ROOM", "m.call"
A, B = "@alice:x", "@bob:x"


def joined(user: str, at: int, device: str = "D", others: int = 0) -> MemberJoined:
    return MemberJoined(ROOM, SLOT, APP, user, device, T0 + at, others)


def left(user: str, at: int, device: str = "D", others: int = 0) -> MemberLeft:
    return MemberLeft(ROOM, SLOT, APP, user, device, T0 + at, "left", others)


def ended(at: int, peak: int = 2, total: int = 2) -> CallEnded:
    return CallEnded(ROOM, SLOT, APP, T0 + at, T0, at, peak, total)


def a_call() -> CallLog:
    """Alice 0–65 s; Bob 10–20 s, back 30–60 s with a second device 40–50 s."""
    log = CallLog(ROOM, SLOT, T0)
    for ev in (
        CallStarted(ROOM, SLOT, APP, A, "audio", T0),
        joined(A, 0),
        joined(B, 10_000),
        left(B, 20_000),
        joined(B, 30_000),
        joined(B, 40_000, "D2", others=1),
        left(B, 50_000, "D2", others=1),
        left(B, 60_000),
        left(A, 65_000),
        ended(65_000),
    ):
        log.apply(ev)
    return log


def test_log_counts_people_not_devices_and_shows_rejoins() -> None:
    log = a_call()
    assert list(log.stints) == [A, B]  # join order
    assert log.stints[A] == [[T0, T0 + 65_000]]
    assert log.stints[B] == [[T0 + 10_000, T0 + 20_000], [T0 + 30_000, T0 + 60_000]]
    assert log.peak == 2 and log.ended_ms == T0 + 65_000


def test_log_follows_the_events_the_session_derives() -> None:
    """The real state machine's events, end to end: two devices of one person count once."""
    calls = RoomCalls(ROOM, joined=[A, B])
    log: CallLog | None = None

    def member(user: str, device: str, ts: int) -> dict[str, object]:
        return {
            "type": "org.matrix.msc3401.call.member",
            "state_key": f"_{user}_{device}_m.call",
            "sender": user,
            "origin_server_ts": ts,
            "content": {
                "application": "m.call",
                "call_id": "",
                "scope": "m.room",
                "device_id": device,
                "membershipID": f"{user}:{device}",
                "expires": 3_600_000,
                "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
                "foci_preferred": [],
            },
        }

    def leave(user: str, device: str) -> dict[str, object]:
        return {
            "type": "org.matrix.msc3401.call.member",
            "state_key": f"_{user}_{device}_m.call",
            "sender": user,
            "content": {},
        }

    steps = [
        (member(A, "A1", T0), 0),
        (member(B, "B1", T0 + 5_000), 5_000),
        (member(B, "B2", T0 + 6_000), 6_000),
        (leave(B, "B1"), 7_000),
        (leave(B, "B2"), 8_000),
        (member(B, "B1", T0 + 9_000), 9_000),
        (leave(A, "A1"), 10_000),
        (leave(B, "B1"), 12_000),
    ]
    for event, at in steps:
        for ev in calls.apply_state(event, T0 + at):
            if isinstance(ev, CallStarted):
                log = CallLog(ROOM, ev.slot_id, ev.at_ms)
            assert log is not None
            log.apply(ev)
    assert log is not None and log.ended_ms == T0 + 12_000
    assert log.stints[A] == [[T0, T0 + 10_000]]
    assert log.stints[B] == [[T0 + 5_000, T0 + 8_000], [T0 + 9_000, T0 + 12_000]]
    assert log.peak == 2


def test_card_numbers_and_text() -> None:
    talk = {A: [(T0 + 1_000, T0 + 31_000), (T0 + 40_000, T0 + 50_000)], B: []}
    card = build_card(a_call(), {A: "Alice", B: "*Bob*"}, talk, RECORDING)
    assert card.duration_ms == 65_000 and card.peak == 2 and len(card.people) == 2
    assert [p.talk_ms for p in card.people] == [40_000, 0]
    # Speech outside a person's presence (lingering speaker levels) does not count.
    late = build_card(a_call(), {}, {B: [(T0 + 15_000, T0 + 35_000)]}, RECORDING)
    assert late.people[1].talk == ((T0 + 15_000, T0 + 20_000), (T0 + 30_000, T0 + 35_000))
    text = card_markdown(card, md_escape)
    lines = text.splitlines()
    assert lines[0] == "Call ended after 1 min 05 s · 2 people"
    assert "2026-05-28 20:26:40 – 20:27:45 (UTC) · at most 2 at once" in text
    assert "- **Alice** in 20:26:40–20:27:45 · spoke 40 s" in text
    # People's text stays literal; rejoins are shown.
    assert "- **\\*Bob\\*** in 20:26:50–20:27:00, 20:27:10–20:27:40 (joined 2 times)" in text
    assert lines[-1] == "Talk time from the recording."
    js = card.to_json()
    assert js["people"] == 2 and js["peak"] == 2 and js["rows"][1]["talk_ms"] == 0


def test_an_opted_out_person_has_no_talk_time() -> None:
    # calls/cards.py blanks the row of someone who opted out of recordings.
    card = build_card(a_call(), {A: "Alice", B: "Bob"}, {A: [], B: [(T0, T0 + 9_000)]}, RECORDING)
    bob = replace(card.people[1], talk=(), talk_ms=None)
    text = card_markdown(replace(card, people=(card.people[0], bob)), md_escape)
    assert (
        "- **Bob** in 20:26:50–20:27:00, 20:27:10–20:27:40 (joined 2 times) · not recorded "
        in (text)
    )
    assert "spoke 9 s" not in text


def test_card_in_the_rooms_timezone_and_unknown_talk() -> None:
    card = build_card(a_call(), {}, None)
    text = card_markdown(card, md_escape, ZoneInfo("Europe/Berlin"), "Europe/Berlin")
    assert "22:26:40 – 22:27:45 (Europe\\/Berlin)" in text  # escaped markdown
    assert "spoke" not in text and [p.talk_ms for p in card.people] == [None, None]
    # The bot was not in the call's media: the card says nothing about talk time (it would
    # be on every card of a call the bot did not join).
    assert "Talk time" not in text, text


def test_seeded_log_of_a_call_the_bot_came_into_late() -> None:
    calls = RoomCalls(ROOM, joined=[A])
    content = {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": "A1",
        "membershipID": "m",
        "expires": 3_600_000,
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [],
        "created_ts": T0,
    }
    event = {
        "type": "org.matrix.msc3401.call.member",
        "state_key": f"_{A}_A1_m.call",
        "sender": A,
        "origin_server_ts": T0,
        "content": content,
    }
    calls.rebuild([event], [A], T0 + 60_000)
    call = calls.call()
    assert call is not None
    log = CallLog.seeded(call)
    log.apply(ended(90_000, peak=1, total=1))
    card = build_card(log, {A: "Alice"}, None)
    assert card.partial and card.people[0].stints == ((T0, T0 + 90_000),)
    assert "I came in after the call began" in card_markdown(card, md_escape)


def test_durations_and_merging() -> None:
    assert format_duration_precise(40_999) == "40 s"
    assert format_duration_precise(65_000) == "1 min 05 s"
    assert format_duration_precise(3_720_000) == "1 h 02 min"
    assert merge([(5, 6), (0, 2), (2, 3), (7, 9)], gap_ms=1) == [(0, 3), (5, 9)]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def owner(identity: str) -> tuple[str, str] | None:
    user, _, device = identity.rpartition(":")
    return (user, device) if identity.startswith("@") else None


def test_tap_turns_loud_frames_into_merged_intervals() -> None:
    timeline = TalkTimeline(owner)
    tap = timeline.tap()
    loud = (np.sin(np.arange(4800) / 10) * 8000).astype(np.int16)
    quiet = np.zeros(4800, dtype=np.int16)
    # Alice: loud 0–1 s, a 0.3 s pause (merged), loud to 2 s; silent, loud again 4–5 s.
    for i in range(50):
        t = 100.0 + i * 0.1
        speaking = t < 101.0 or 101.3 <= t < 102.0 or 104.0 <= t < 105.0
        tap("k", "@alice:x:D", "Alice", t, loud if speaking else quiet)
        tap("k2", "@bob:x:E", "Bob", t, quiet)
    data = timeline.window(100.0, 105.0)
    assert data is not None and data.source == RECORDING
    assert data.talk == {"@alice:x": [(100.0, 102.0), (104.0, 105.0)]}
    assert data.covered_s == 5.0


def test_active_speakers_count_where_nothing_was_recorded_and_none_means_unknown() -> None:
    clock = Clock()
    timeline = TalkTimeline(owner, clock=clock)
    assert timeline.window(0, 2000) is None  # nobody watched: unknown
    timeline.watch_speakers(True)
    clock.t = 1010
    timeline.speakers(["@alice:x:D"])
    clock.t = 1015
    timeline.speakers(["@alice:x:D", "@bob:x:E"])
    clock.t = 1020
    timeline.speakers([])
    clock.t = 1030
    timeline.watch_speakers(False)
    data = timeline.window(1000, 1030)
    assert data is not None and data.source == SPEAKERS and data.covered_s == 30
    assert data.talk == {"@alice:x": [(1010, 1020)], "@bob:x": [(1015, 1020)]}


def test_recording_wins_where_both_watched() -> None:
    clock = Clock()
    timeline = TalkTimeline(owner, clock=clock)
    timeline.watch_speakers(True)
    timeline.speakers(["@alice:x:D"])  # from 1000
    loud = np.full(4800, 3000, dtype=np.int16)
    for i in range(10):  # the recording 1005–1006: alice loud
        timeline.tap()("k", "@alice:x:D", "Alice", 1005 + i * 0.1, loud)
    clock.t = 1010
    data = timeline.window(1000, 1010)
    assert data is not None and data.source == f"{RECORDING} and {SPEAKERS}"
    assert data.talk["@alice:x"] == [(1000, 1005), (1005, 1006), (1006, 1010)]


def test_picture_has_a_row_per_person_and_bars_where_they_spoke() -> None:
    rows = [
        Row("Alice", present=[(0, 60)], spoke=[(10, 20)]),
        Row("Bob <b>&amp;</b> " + "x" * 80, present=[(5, 30)], spoke=[(40, 50)]),
        Row("Carol", present=[(0, 60)], spoke=[]),
    ]
    png, layout = draw_timeline(rows, 60)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (layout.width, layout.height)
    px = img.convert("RGB").load()
    assert px is not None
    assert px[layout.x_at(15), layout.row_y(0)] == color_of(0)  # alice spoke
    assert px[layout.x_at(30), layout.row_y(0)] == PRESENT  # alice there, silent
    assert px[layout.x_at(45), layout.row_y(1)] == color_of(1)  # bob spoke
    assert px[layout.x_at(55), layout.row_y(1)] == BACKGROUND  # bob gone
    assert px[layout.x_at(15), layout.row_y(2)] == PRESENT  # carol never spoke
    # The plot starts right of the names: nothing of a long name reaches it.
    for x in range(layout.plot_x0 - 5, layout.plot_x0):
        assert px[x, layout.row_y(1)] == BACKGROUND
    # Three rows: one more person makes the picture one row taller.
    _, four = draw_timeline([*rows, Row("Dan", [(0, 1)], [])], 60)
    assert four.height - layout.height == layout.row_y(1) - layout.row_y(0)
