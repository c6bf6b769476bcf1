"""Power levels, checklist 12: may the bot, and may ordinary members, send call membership."""

from __future__ import annotations

import asyncio

import aiohttp
from mautrix.errors import MatrixRequestError
from mautrix.types import UserID

from ..matrix.permissions import FIX_HINT, check_call_permission
from ..rtc.membership import CALL_MEMBER_TYPE
from .probe import Probe, RunState
from .report import FAIL, OK, PERM_BOT, PERM_MEMBERS, Check, matrix_error


async def call_permissions(probe: Probe, run: RunState) -> None:
    try:
        async with asyncio.timeout(probe.request_timeout + 1):
            perm = await check_call_permission(
                probe.ctx.client, run.room_id, UserID(probe.ctx.client.mxid)
            )
    except (MatrixRequestError, TimeoutError, aiohttp.ClientError, AssertionError) as e:
        for name in (PERM_BOT, PERM_MEMBERS):
            run.put(
                Check(
                    name,
                    FAIL,
                    "could not read the room's power levels",
                    cause=matrix_error(e),
                    fix="Check that the bot is joined to this room.",
                )
            )
        return
    details = (
        f"`{CALL_MEMBER_TYPE}` needs {perm.needed}; the bot has {perm.bot_level}; "
        f"users_default is {perm.member_level}",
    )
    fix = FIX_HINT.format(member_level=perm.member_level)
    if perm.bot_can_join:
        run.put(
            Check(
                PERM_BOT,
                OK,
                f"the bot (level {perm.bot_level}) may send call membership (needs {perm.needed})",
                details=details,
            )
        )
    else:
        run.put(
            Check(
                PERM_BOT,
                FAIL,
                f"the bot can't join calls here: call membership needs level {perm.needed}, "
                f"the bot has {perm.bot_level}",
                cause=f"Sending `{CALL_MEMBER_TYPE}` needs power level {perm.needed} (its "
                "own entry in the power levels, or `state_default`); the homeserver answers "
                "403 `user_level < send_level`.",
                fix=f"{fix} Or give the bot power level {perm.needed}.",
                details=details,
            )
        )
    if perm.members_can_join:
        run.put(
            Check(
                PERM_MEMBERS,
                OK,
                f"ordinary members (level {perm.member_level}) may join calls",
                details=details,
            )
        )
    else:
        run.put(
            Check(
                PERM_MEMBERS,
                FAIL,
                f"ordinary members (level {perm.member_level}) can't join calls: call "
                f"membership needs level {perm.needed}",
                cause=f"Only members with power level {perm.needed} or more may send "
                f"`{CALL_MEMBER_TYPE}`; Element hides or fails 'Join' for everyone else.",
                fix=fix,
                details=details,
            )
        )
