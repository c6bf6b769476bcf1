"""The model behind the recaps: one OpenAI-compatible `POST {base_url}/chat/completions`.

Only the configured URL is asked, on a connection pool of its own (two connections: recaps
never hold the Matrix client's or the authorization service's), without following
redirects, with a time limit per request and a cap on the answer's size. What goes wrong is
a `RecapError` with a short reason for the log; the room only ever gets a fixed sentence.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from .recap import RecapError
from .settings import RecapSettings

MAX_ANSWER_BYTES = 256 * 1024


class ChatClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2), trust_env=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(
        self,
        settings: RecapSettings,
        messages: list[dict[str, str]],
        schema: dict[str, object] | None = None,
    ) -> str:
        """The model's answer (its first choice's text). With `recap.json_schema`, the
        answer's schema goes along in `response_format` (llama.cpp's servers constrain the
        answer to it; others read `json_object` alone)."""
        if not settings.base_url:
            raise RecapError("recap.base_url is not set")
        body: dict[str, Any] = {
            "model": settings.model or "default",
            "messages": messages,
            "temperature": 0,
            "max_tokens": settings.max_output_tokens,
            "response_format": {"type": "json_object"},
        }
        if schema is not None and settings.json_schema:
            body["response_format"]["schema"] = schema
        headers = {"Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        url = f"{settings.base_url}/chat/completions"
        try:
            async with asyncio.timeout(settings.timeout_s):
                async with self._http().post(
                    url, data=json.dumps(body), headers=headers, allow_redirects=False
                ) as resp:
                    raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                    status = resp.status
        except TimeoutError:
            raise RecapError(f"the model did not answer within {settings.timeout_s:g} s") from None
        except aiohttp.ClientError as e:
            raise RecapError(
                f"the model's API could not be reached ({type(e).__name__})"
            ) from None
        if status != 200:
            raise RecapError(f"the model's API answered HTTP {status}")
        if len(raw) > MAX_ANSWER_BYTES:
            raise RecapError("the model's answer is too large")
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RecapError("the model's API gave no chat completion") from None
        if not isinstance(content, str) or not content.strip():
            raise RecapError("the model's answer is empty")
        return content
