"""The bot records a multi-SFU call: people on another SFU are in the recording too.

alice (440 Hz) publishes on the stack's SFU, the bot's own; bob (660 Hz) on a second,
independent one (`second_transport`: another LiveKit behind another authorization service),
as a member of another homeserver would. Element Call subscribes on both; so must the
recorder, or bob would be missing from the files without anyone noticing.
"""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
import soundfile as sf

from rtcbot_stack.stack import Stack
from tests.browser.conftest import ElementCallFactory
from tests.browser.second_sfu import SecondTransport, stack_transport
from tests.browser.test_bot_in_element_call import dominant_hz, download
from tests.browser.test_multi_sfu import sent_membership, wait_for_publishers
from tests.conftest import UserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser, body, files_after, is_message_from

pytestmark = pytest.mark.stack


def band_energy(samples: np.ndarray, rate: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[(freqs > hz - 15) & (freqs < hz + 15)].sum())


@pytest.mark.parametrize("rtc_mode", ["matrix_2_0", "compatibility"])
async def test_bot_records_people_on_two_sfus(
    rtc_mode: str,
    stack: Stack,
    alice: MatrixUser,
    make_user: UserFactory,
    bot_id: str,
    bot_room: str,
    element_call: ElementCallFactory,
    second_transport: SecondTransport,
) -> None:
    first, second = stack_transport(stack), second_transport
    bob = await make_user("bob")
    await alice.set_displayname("Alice Example")
    await bob.set_displayname("Bob Example")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    before = (await alice.messages(bot_room, 1))[-1]["event_id"]
    await element_call(alice, bot_room, tone_hz=440, rtc_mode=rtc_mode)
    _, alice_member = await sent_membership(alice, bot_room, rtc_mode, before)
    await alice.wait_for(
        bot_room, lambda e: is_message_from(e, bot_id) and "started a" in body(e), 20, before
    )
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=60)
    assert body(reply).startswith("🔴 Recording started"), body(reply)

    await element_call(
        bob, bot_room, tone_hz=660, rtc_mode=rtc_mode, livekit_service_url=second.service_url
    )
    _, bob_member = await sent_membership(bob, bot_room, rtc_mode, before)
    assert bob_member.transports[0].livekit_service_url == second.service_url, bob_member
    bob_id = bob_member.rtc_backend_identity
    await wait_for_publishers(bot_room, {alice_member.rtc_backend_identity: first, bob_id: second})

    async def record_status() -> str:
        sent = await alice.send_text(bot_room, "!call record status")
        reply = await alice.wait_for(
            bot_room,
            lambda e: is_message_from(e, bot_id) and "Recording for" in body(e),
            30,
            after=sent,
        )
        return body(reply)

    # The bot follows bob to his SFU: it is a participant there, and records him.
    deadline = time.monotonic() + 45
    while True:
        on_second = [p.identity for p in await second.participants(bot_room)]
        status = await record_status()
        if any(i.startswith(f"{bot_id}:") for i in on_second) and "Bob Example" in status:
            break
        assert time.monotonic() < deadline, (on_second, status)
        await asyncio.sleep(0.5)
    print(f"[multi-sfu-rec] {rtc_mode}: on the second SFU {on_second}; status {status!r}")
    assert "Alice Example" in status, status
    await asyncio.sleep(2)  # a little more audio of both, for the spectra below

    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    print(f"[multi-sfu-rec] {body(summary)!r}")
    assert "Alice Example" in body(summary) and "Bob Example" in body(summary), body(summary)
    notices = [body(e) for e in await alice.messages(bot_room, 30) if is_message_from(e, bot_id)]
    assert not [n for n in notices if "could not connect there" in n], notices

    files = await files_after(alice, bot_room, bot_id, stopped, 3)
    print(f"[multi-sfu-rec] files: {sorted(files)}")

    async def samples_of(prefix: str) -> tuple[np.ndarray, int]:
        label = next((k for k in files if k.startswith(prefix)), None)
        assert label is not None, (prefix, sorted(files))
        data = await download(alice, files[label]["content"]["url"])
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        return samples, rate

    loud_spans: list[tuple[int, int]] = []
    for person, tone in (("Alice Example", 440), ("Bob Example", 660)):
        samples, rate = await samples_of(f"{person} (")
        loud = np.flatnonzero(np.abs(samples) > 2000)
        assert len(loud) > rate // 2, (person, len(loud) / rate)
        last_second = samples[max(loud[0], loud[-1] - rate) : loud[-1]]
        assert abs(dominant_hz(last_second, rate) - tone) < 10, person
        loud_spans.append((int(loud[0]), int(loud[-1])))
    # The mix has both where both spoke. The files share one time axis (each is padded from
    # the segment's start), so that span is read from the people's own files rather than
    # guessed from the end of the mix: their tracks end at different moments on stop, and
    # a tone cut off inside the window smears energy into every band.
    mix, rate = await samples_of("Mix of everyone")
    both_from = max(start for start, _ in loud_spans)
    both_to = min(end for _, end in loud_spans) - rate // 10
    assert both_to - both_from > rate // 2, (loud_spans, rate)
    window = mix[max(both_from, both_to - rate) : both_to]
    e440, e660, e550 = (band_energy(window, rate, hz) for hz in (440, 660, 550))
    print(f"[multi-sfu-rec] mix band energies 440 {e440:.0f}, 660 {e660:.0f}, 550 {e550:.0f}")
    assert e440 > 10 * e550 and e660 > 10 * e550, (e440, e660, e550)

    # The recording over, the bot leaves bob's SFU too.
    async def bot_left_second() -> bool:
        participants = await second.participants(bot_room)
        return not any(p.identity.startswith(f"{bot_id}:") for p in participants)

    await eventually(
        bot_left_second, timeout=30, what="the bot leaving the second SFU", interval=0.5
    )
