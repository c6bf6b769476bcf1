"""The bot's LiveKit token from its own homeserver (MSC4195/MSC4512), for `url` transports.

`POST /_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token` with the bot's own
access token, as js-sdk's `_unstable_getLivekitToken`: the homeserver checks that the bot is
joined to the room and hands the request to the application service behind its proxy (or,
with `server_name`, to another homeserver over federation). A 404 means the homeserver has
no such endpoint (or nothing behind it): the caller may fall back to the deprecated
`livekit_service_url`. Nothing secret leaves the bot's connection to its own homeserver;
the JWT never reaches a message or a log line.
"""

from __future__ import annotations

import logging

import aiohttp
from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.errors import MatrixConnectionError, MatrixRequestError

from ..redaction import shorten
from ..rtc.identity import DEFAULT_SLOT_ID, JwtDecodeError
from .tokens import SfuAccess, SfuAuthError, access_from_jwt

GET_TOKEN_PATH = Path.unstable["io.element.msc4195"].rtc.livekit.get_token
ENDPOINT = "the homeserver's rtc/livekit/get_token"


def _refusal(e: MatrixRequestError) -> SfuAuthError:
    status = e.http_status
    detail = shorten(" ".join(x for x in (e.errcode, e.message) if x) or "no details", 200)
    if status == 404 or e.errcode == "M_UNRECOGNIZED":
        return SfuAuthError(
            "not_found",
            status,
            f"The homeserver advertises a LiveKit `url` but answers 404 at {ENDPOINT}: "
            "nothing issues tokens for it (Synapse needs `experimental_features: "
            "{msc4512_enabled: true}` and an application service with `io.element.msc4512."
            "proxy_prefix: rtc/livekit`, e.g. rtcbot's, see docs/DEPLOYMENT.md).",
            errcode=e.errcode,
            homeserver=True,
        )
    if status in (401, 403):
        return SfuAuthError(
            "unauthorised",
            status,
            f"{ENDPOINT} refused the bot ({status}: {detail}).",
            errcode=e.errcode,
            homeserver=True,
        )
    if status >= 500 or status == 429:
        return SfuAuthError(
            "server_error",
            status,
            f"{ENDPOINT} failed ({status}: {detail}); it may work if tried again.",
            errcode=e.errcode,
            homeserver=True,
        )
    return SfuAuthError(
        "bad_request",
        status,
        f"{ENDPOINT} rejected the request ({status}: {detail}).",
        errcode=e.errcode,
        homeserver=True,
    )


async def homeserver_access(
    client: Client,
    sfu_url: str,
    room_id: str,
    device_id: str,
    member_id: str,
    *,
    slot_id: str = DEFAULT_SLOT_ID,
    server_name: str | None = None,
    log: logging.Logger | None = None,
) -> SfuAccess:
    """A LiveKit token for `sfu_url` from the bot's homeserver; raises SfuAuthError."""
    body: dict[str, object] = {
        "url": sfu_url,
        "room_id": room_id,
        "slot_id": slot_id,
        "member": {"id": member_id, "claimed_device_id": device_id},
    }
    if server_name:
        body["server_name"] = server_name
    try:
        answer = await client.api.request(Method.POST, GET_TOKEN_PATH, body, sensitive=True)
    except MatrixRequestError as e:
        raise _refusal(e) from None
    except (MatrixConnectionError, aiohttp.ClientError, TimeoutError) as e:
        raise SfuAuthError(
            "unreachable",
            None,
            f"Could not reach {ENDPOINT}: {type(e).__name__}.",
            homeserver=True,
        ) from None
    jwt = answer.get("jwt") if isinstance(answer, dict) else None
    if not isinstance(jwt, str) or not jwt:
        raise SfuAuthError(
            "bad_response", 200, f"{ENDPOINT} answered without a jwt.", homeserver=True
        )
    try:
        access = access_from_jwt(sfu_url, jwt, "homeserver")
    except (JwtDecodeError, ValueError) as e:
        raise SfuAuthError(
            "bad_response",
            200,
            f"{ENDPOINT} returned a token that cannot be used: {e}",
            homeserver=True,
        ) from None
    (log or logging.getLogger(__name__)).debug(
        "Got SFU access in %s from the homeserver (LiveKit room %s)", room_id, access.room
    )
    return access
