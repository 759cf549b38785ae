"""Moving bytes: multipart upload bodies streamed from disk, result files streamed to disk.

A multipart body is built fresh for every attempt (aiohttp consumes a ``FormData`` once) with
the file part reading the upload from disk in chunks; failures and warnings files are written
chunk by chunk to a ``.part`` file and renamed into place, so a partial download never looks
like a result.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import IO

import aiohttp

#: Bytes read per chunk when streaming a failures or warnings file to disk.
CHUNK_BYTES = 64 * 1024


def open_form(path: Path) -> tuple[aiohttp.FormData, IO[bytes]]:
    """Build a fresh multipart body whose ``file`` part streams ``path`` from disk.

    Args:
        path: the upload file; its name becomes the part's filename.

    Returns:
        ``(form, handle)``: the caller closes ``handle`` once the request is over.

    Raises:
        OSError: the file cannot be opened.
    """
    handle = path.open("rb")
    form = aiohttp.FormData()
    content_type = "text/plain" if path.suffix.lower() in (".tsv", ".ssv", ".txt") else "text/csv"
    form.add_field("file", handle, filename=path.name, content_type=content_type)
    return form, handle


def maybe_sent(exc: BaseException) -> bool:
    """Whether a transport error may have happened after the request reached Marketo.

    Only a connection that never opened (refused, DNS, connect timeout) proves that nothing
    was sent; everything else (reset, closed, read timeout, truncated answer) may hide a job.
    """
    return not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


async def stream_to(resp: aiohttp.ClientResponse, dest: Path) -> int:
    """Write the body to ``dest`` chunk by chunk via a ``.part`` file; return bytes written.

    An empty body leaves no file (and removes a stale ``dest``). If the transfer breaks, the
    ``.part`` file is removed and the error propagates (the caller retries).

    Raises:
        OSError: the file cannot be written.
        aiohttp.ClientError, TimeoutError: the transfer broke.
    """
    part = dest.with_name(dest.name + ".part")
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    handle = await asyncio.to_thread(part.open, "wb")
    written = 0
    try:
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            await asyncio.to_thread(handle.write, chunk)
            written += len(chunk)
    except BaseException:
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(part.unlink, True)
        raise
    await asyncio.to_thread(handle.close)
    if written == 0:
        await asyncio.to_thread(part.unlink, True)
        await asyncio.to_thread(dest.unlink, True)
        return 0
    await asyncio.to_thread(os.replace, part, dest)
    return written

