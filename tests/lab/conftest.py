"""Helpers of the lab tests: one lab served for a whole module, owner folders of a test's own in it, and
waiting for a condition instead of sleeping.

A module whose tests share :func:`shared_lab` runs them in the module's event loop (the loop that serves
the lab): ``pytestmark = pytest.mark.asyncio(loop_scope="module")``; it starts no other lab (two labs at once
in one process share pyftpdlib's one I/O loop for their FTP servers, and stopping one closes the other's). A
test that needs a lab nobody else touched (a quota, the whole site's listing, ``check`` finding nothing) is in
a module of its own kind, with a lab of its own (``lab`` in tests/conftest.py): starting one takes
milliseconds.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from backend.lab import Lab

_owners = itertools.count(1)


async def until(predicate: Callable[[], Any | Awaitable[Any]], what: str, timeout: float = 10.0,
                interval: float = 0.005) -> Any:
    """Wait until ``predicate()`` (a function, or a coroutine function) returns something true, checking
    every ``interval`` seconds; fail with ``what`` and the time waited when ``timeout`` seconds pass first.

    Returns:
        the predicate's true value.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}: it did not happen")
        await asyncio.sleep(interval)


def new_owner(lab: Lab, prefix: str = "o") -> str:
    """A new owner folder in ``lab``'s uploads root, named ``PREFIX<n>`` (a number no test of this process has
    had), for a test's own uploads in a lab other tests share.

    Returns:
        the owner's name.
    """
    while True:
        name = f"{prefix}{next(_owners)}"
        try:
            (lab.uploads_root / name).mkdir()
            return name
        except FileExistsError:
            continue


def put_upload(lab: Lab, owner: str, name: str, data: bytes, age: float = 3600) -> Path:
    """Write upload ``owner/name`` holding ``data`` with its mtime ``age`` seconds ago (settled: pending at the
    first refresh).

    Returns:
        its path.
    """
    folder = lab.uploads_root / owner
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_lab(tmp_path_factory):
    """A lab started once for the module's tests, served by the module's event loop (``lab.config`` is its
    config). Its tests use owners of their own (:func:`new_owner`), never change what the others use, and look
    only at what is theirs."""
    lab = Lab(tmp_path_factory.mktemp("shared") / "lab")
    lab.config = await lab.start()
    yield lab
    await lab.stop()
