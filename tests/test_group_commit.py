"""GroupCommit: writes that arrive while one commits go together in the next transaction."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from conftest import run_async

from store.group_commit import GroupCommit


class Writer:
    """A write function whose first batch is held until released, recording every batch."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release.wait(10)
        if self.fail_on in items:
            raise RuntimeError("the database went away")
        return [item.upper() for item in items]


async def _while_first_commits(group: GroupCommit, writer: Writer, later: list[str]):
    first = asyncio.ensure_future(group("a"))
    assert await asyncio.to_thread(writer.first_started.wait, 10)
    waiting = [asyncio.ensure_future(group(item)) for item in later]
    await asyncio.sleep(0.05)  # every one of them is queued before the first commits
    writer.release.set()
    return first, waiting


def test_writes_that_come_during_a_commit_go_together_and_each_gets_its_own_result():
    writer = Writer()
    group = GroupCommit(writer, name="test-group")

    async def run():
        first, waiting = await _while_first_commits(group, writer, ["b", "c", "d"])
        return await first, await asyncio.gather(*waiting)

    first, rest = run_async(run())
    assert first == "A" and rest == ["B", "C", "D"]
    assert writer.batches == [["a"], ["b", "c", "d"]]


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_goes():
    writer = Writer(fail_on="c")
    group = GroupCommit(writer, name="test-group")

    async def run():
        first, waiting = await _while_first_commits(group, writer, ["b", "c"])
        assert await first == "A"
        for caller in waiting:
            with pytest.raises(RuntimeError, match="went away"):
                await caller
        return await group("e")

    assert run_async(run()) == "E"
    assert writer.batches == [["a"], ["b", "c"], ["e"]]


def test_a_caller_gone_before_its_turn_is_not_written():
    """Its client got no answer, so the sender tries again; nothing is written for it."""
    writer = Writer()
    group = GroupCommit(writer, name="test-group")

    async def run():
        first = asyncio.ensure_future(group("a"))
        assert await asyncio.to_thread(writer.first_started.wait, 10)
        gone = asyncio.ensure_future(group("gone"))
        stays = asyncio.ensure_future(group("b"))
        await asyncio.sleep(0.05)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        # The cancellation reaches the writer's side of the future on the loop's next turn.
        await asyncio.sleep(0)
        writer.release.set()
        return await first, await stays

    assert run_async(run()) == ("A", "B")
    assert writer.batches == [["a"], ["b"]]


def test_a_batch_holds_at_most_max_batch():
    writer = Writer()
    group = GroupCommit(writer, name="test-group", max_batch=2)

    async def run():
        first, waiting = await _while_first_commits(group, writer, ["b", "c", "d"])
        return [await first, *await asyncio.gather(*waiting)]

    assert run_async(run()) == ["A", "B", "C", "D"]
    assert writer.batches == [["a"], ["b", "c"], ["d"]]


def test_a_write_that_answers_for_too_few_fails_its_batch_and_the_writer_goes_on():
    """A write that returns fewer results than it was given items answers its callers with
    an error, not with another's result or never; later batches still go."""

    def write(items: list[str]) -> list[str]:
        return [item.upper() for item in items if item != "lost"]

    group = GroupCommit(write, name="test-group")

    async def run():
        with pytest.raises(RuntimeError, match="0 results for a batch of 1"):
            await asyncio.wait_for(group("lost"), 10)
        return await asyncio.wait_for(group("b"), 10)

    assert run_async(run()) == "B"


def test_submit_answers_a_thread_once_its_batch_committed():
    writer = Writer()
    group = GroupCommit(writer, name="test-group")
    first = group.submit("a")
    assert writer.first_started.wait(10)
    later = [group.submit(item) for item in ["b", "c"]]
    assert not first.done()  # not answered before its transaction committed
    writer.release.set()
    assert [future.result(10) for future in [first, *later]] == ["A", "B", "C"]
    assert writer.batches == [["a"], ["b", "c"]]


def test_close_writes_everything_handed_over_before_it_returns_and_refuses_more():
    writer = Writer()
    group = GroupCommit(writer, name="test-group", max_batch=2)
    first = group.submit("a")
    assert writer.first_started.wait(10)
    later = [group.submit(item) for item in ["b", "c", "d"]]
    closing = threading.Thread(target=group.close)
    closing.start()
    closing.join(0.1)
    assert closing.is_alive()  # waits for the batch being committed and those after it
    writer.release.set()
    closing.join(10)
    assert not closing.is_alive()
    assert all(future.done() for future in [first, *later])
    assert writer.batches == [["a"], ["b", "c"], ["d"]]
    with pytest.raises(RuntimeError, match="test-group is closed"):
        group.submit("e")
    assert writer.batches == [["a"], ["b", "c"], ["d"]]


def test_closing_a_group_that_never_wrote_returns_at_once():
    writer = Writer()
    group = GroupCommit(writer, name="test-group")
    group.close()
    with pytest.raises(RuntimeError, match="closed"):
        group.submit("a")
    assert writer.batches == []
