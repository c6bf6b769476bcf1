"""Uploading a file for a room: encrypted when the room is (and the bot has crypto).

In an encrypted room the bytes are AES-CTR encrypted before upload (mautrix's
`encrypt_attachment`) and the event carries `file` (URL, key, IV, SHA-256) instead of `url`;
the event itself is then Megolm-encrypted by the client like any other message. The file name
goes only into that encrypted event, never to the media repository (review L2). Without crypto
nothing is uploaded for an encrypted room (PlaintextRefused, encryption_guard.py): the media
commands are refused there before a recording starts (matrix/crypto_status.py).
"""

from __future__ import annotations

from typing import Any

from mautrix.client import Client
from mautrix.types import RoomID

from .crypto_status import room_is_encrypted
from .encryption_guard import require_encryption


async def upload_for_room(
    client: Client, room_id: RoomID, data: bytes, mime_type: str, filename: str
) -> dict[str, Any]:
    """Upload `data`; returns the keyword arguments for the media event's content:
    `{"file": EncryptedFile}` in an encrypted room, else `{"url": mxc}`."""
    if client.crypto is not None and await room_is_encrypted(client, room_id):
        # Imported here: pycryptodome comes with the `encryption` extra, present when crypto is.
        from mautrix.crypto.attachments import encrypt_attachment

        ciphertext, file = encrypt_attachment(data)
        # No filename: the media repository would store it in the clear.
        file.url = await client.upload_media(ciphertext, mime_type="application/octet-stream")
        return {"file": file}
    await require_encryption(client, room_id)
    mxc = await client.upload_media(data, mime_type=mime_type, filename=filename)
    return {"url": mxc}
