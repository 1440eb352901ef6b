"""The sync bridge: `graph.invoke` interrupted by Ctrl-C stops the node's work instead of letting it run on."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from speedrun.config import RunContext, Settings
from speedrun.graphs import common
from speedrun.graphs.turbo import graph
from tests.fake_llm import Reply
from tests.helpers import PYTEST, TEST_CALC, file_blocks

CONTRACT = (
    "DATA CONTRACT:\nints\n\nAPI CONTRACT:\nadd(a, b) -> int in calc.py\n\nALGORITHM:\nsum\n\n"
    "RULES:\nWrite calc.py and test_calc.py (pytest).\n"
)
REPLY_DELAY = 1.5


async def _bridge_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def test_ctrl_c_during_sync_invoke_cancels_the_model_call(speedrun_env, fake_llm, tmp_path):
    # Ctrl-C is how a user cancels a blocking `graph.invoke`: SIGINT raises KeyboardInterrupt in the main thread.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    fake_llm.script(
        Reply(
            content=file_blocks({"calc.py": "def add(a, b):\n    return a + b\n", "test_calc.py": TEST_CALC}),
            delay=REPLY_DELAY,
        )
    )
    out = tmp_path / "ws"
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    interrupted_at: list[float] = []

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 20
        while not fake_llm.chat_requests() and time.monotonic() < deadline:
            time.sleep(0.01)
        interrupted_at.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    watcher = threading.Thread(target=press_ctrl_c, daemon=True)
    try:
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            graph.invoke(
                {"contract": CONTRACT, "output_dir": str(out), "test_command": PYTEST}, context=RunContext(Settings())
            )
        returned_at = time.monotonic()
    finally:
        watcher.join(5)
        signal.signal(signal.SIGINT, previous)

    [request] = fake_llm.chat_requests()  # the generator's call was in flight when the user pressed Ctrl-C
    assert returned_at - interrupted_at[0] < REPLY_DELAY / 2  # invoke gave control back at once

    # The node's task on the bridge loop was cancelled, not left waiting for the model.
    loop = common._background_loop()
    deadline = time.monotonic() + REPLY_DELAY / 3  # well before the model answers
    while (left := asyncio.run_coroutine_threadsafe(_bridge_tasks(), loop).result(5)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert left == []

    # Past the moment the model answered, nothing the cancelled run would have written appears on disk.
    time.sleep(REPLY_DELAY + 0.5)
    assert not (out / "calc.py").exists() and not (out / "test_calc.py").exists()
    assert len(fake_llm.chat_requests()) == 1
