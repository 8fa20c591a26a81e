"""First steps of a new installation, from the command line: a tenant, the first administrator
(and any other user), and the broker's password file. Everything after that is done through
the registry API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.auth import Passwords, Role
from gateway.records.store import RecordStore
from gateway.registry.broker_credentials import write_password_file
from gateway.registry.service import Registry, UserWithTeams
from gateway.settings import BrokerAccountsSettings


async def add_user(
    store: RecordStore,
    *,
    tenant_id: str,
    username: str,
    display_name: str,
    roles: Sequence[Role],
    team_names: Sequence[str],
    password: str,
) -> UserWithTeams:
    """Creates the user, and any care team named that does not exist yet."""
    registry = Registry(store)
    await registry.tenant(tenant_id)
    team_ids = [await registry.team_named(tenant_id, name) for name in team_names]
    password_hash = await asyncio.to_thread(Passwords().hash, password)
    return await registry.create_user(
        tenant_id,
        username=username,
        display_name=display_name,
        roles=roles,
        team_ids=team_ids,
        password_hash=password_hash,
    )


async def write_broker_passwords(store: RecordStore, accounts: BrokerAccountsSettings) -> int:
    """Render the broker's password file; the number of home gateways in it."""
    if accounts.password_file is None:
        raise ValueError("broker_accounts.password_file is not set")
    lines = await Registry(store).broker_password_lines()
    await asyncio.to_thread(
        write_password_file, accounts.password_file, accounts.base_password_file, lines
    )
    return len(lines)
