"""A child process for the kill-and-resume tests: runs (or resumes) one showdown thread on a SQLite checkpointer.

Usage: python tests/parallel_child.py <db path> <thread id> <inputs JSON | "resume">. Prints the result as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def main(db: str, thread_id: str, inputs: str) -> None:
    """Run the showdown graph as the product does (same serializer, durability 'sync'), or resume it with None."""
    import aiosqlite
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from speedrun.config import RunContext, Settings
    from speedrun.graphs.showdown import builder
    from speedrun.state import checkpoint_types

    payload: Any = None if inputs == "resume" else json.loads(inputs)
    async with aiosqlite.connect(db) as conn:
        saver = AsyncSqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types()))
        await saver.setup()
        graph = builder.compile(checkpointer=saver, name="showdown")
        final = await graph.ainvoke(
            payload,
            {"configurable": {"thread_id": thread_id}, "recursion_limit": 200},
            context=RunContext(Settings()),
            durability="sync",
        )
    result = final.get("result")
    print(json.dumps(result.model_dump(mode="json") if result is not None else None), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
