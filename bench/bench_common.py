"""What the benchmarks share: the care platform in its own process, as a municipality runs it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tryggheim.broker import MosquittoServer, find_free_port


async def start_platform(work: Path, broker: MosquittoServer) -> asyncio.subprocess.Process:
    """``tryggheim gateway run`` with a SQLite record store in ``work``, on ``broker`` as its
    ``platform`` user; the caller terminates it."""
    config = work / "platform.toml"
    config.write_text(
        f'database_url = "sqlite+aiosqlite:///{work / "records.db"}"\n'
        f"http_port = {find_free_port()}\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "platform"\npassword = "{broker.users["platform"]}"\n'
    )
    return await tryggheim("gateway", "run", "--config", str(config))


async def tryggheim(*args: str) -> asyncio.subprocess.Process:
    """A ``tryggheim`` command as a child process (its log is not kept)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tryggheim.cli", *args, stderr=asyncio.subprocess.DEVNULL
    )
