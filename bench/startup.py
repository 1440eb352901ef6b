"""Benchmark: MCP spawn → initialize → list_tools for `speedrun mcp` versus a bare MCPServer with one tool.

Prints the medians and their ratio; the target is a ratio close to 1 (heavy libraries are imported lazily).
Run: uv run python bench/startup.py [ROUNDS]
"""

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

BARE = '''
from mcp.server.mcpserver import MCPServer
server = MCPServer("bare")
@server.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"
server.run()
'''


async def spawn_once(params: StdioServerParameters) -> float:
    started = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()
    return time.perf_counter() - started


async def median(params: StdioServerParameters, rounds: int) -> float:
    return statistics.median([await spawn_once(params) for _ in range(rounds)])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        bare_file = Path(tmp) / "bare.py"
        bare_file.write_text(BARE)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "SPEEDRUN_HOME": tmp}
        bare = asyncio.run(
            median(StdioServerParameters(command=sys.executable, args=[str(bare_file)], env=env), rounds)
        )
        ours = asyncio.run(
            median(StdioServerParameters(command=sys.executable, args=["-m", "speedrun", "mcp"], env=env), rounds)
        )
    print(f"bare MCPServer  spawn→tools: {bare * 1000:7.0f} ms (median of {rounds})")
    print(f"speedrun mcp    spawn→tools: {ours * 1000:7.0f} ms (median of {rounds})")
    print(f"ratio speedrun/bare: {ours / bare:.2f}")


if __name__ == "__main__":
    main()
