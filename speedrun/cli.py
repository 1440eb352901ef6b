"""The `speedrun` command: parses arguments, calls the gateway or a graph, prints results. No workflow logic."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from speedrun.config import Settings, load_settings
from speedrun.errors import InputError, SpeedRunError


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise InputError(f"--prompt-file {args.prompt_file!r} does not exist.")
        return path.read_text(encoding="utf-8")
    if args.prompt == "-":
        return sys.stdin.read()
    if not args.prompt:
        raise InputError("give a PROMPT argument, '-' to read it from stdin, or --prompt-file FILE.")
    return args.prompt


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Report whether the generator is configured and its endpoint answers."""
    from speedrun.llm import list_models

    spec = settings.role("generator").primary
    models = await list_models(spec, settings)
    print(f"endpoint  {spec.base_url}\nmodel     {spec.model}\nkey       {'set' if spec.api_key else 'not needed'}")
    print(f"models    {', '.join(models) if models else '(none listed)'}")
    if models and spec.model not in models:
        _print_err(f"warning: {spec.model!r} is not among the endpoint's models; set CEREBRAS_MODEL or "
                   "SPEEDRUN_GENERATOR to one of them.")
        return 1
    print("status    ok")
    return 0


async def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Generate files from a prompt into --out, printing each file as it lands."""
    from speedrun.codegen import generate_and_write, read_context_files
    from speedrun.state import Usage

    prompt = _read_prompt(args)
    settings.role("generator")
    out = Path(args.out).expanduser().resolve()
    context = read_context_files(args.context or [], Path.cwd(), [Path.cwd().resolve(), out])

    async def progress(outcome: Any) -> None:
        action = getattr(outcome, "action", None)
        _print_err(f"  {action or 'REFUSED':9} {outcome.path}" + ("" if action else f": {outcome.error}"))

    _print_err(f"generating into {out} ...")
    result = await generate_and_write(settings, prompt, out, system_prompt=args.system, context=context,
                                      max_tokens=args.max_tokens, on_file=progress)
    files = result.report.files_written
    usage = Usage.of(result.entries)
    if args.json:
        print(json.dumps({"status": result.status, "output_dir": str(out),
                          "files_written": [f.model_dump() for f in files],
                          "errors": [e.model_dump() for e in result.report.errors],
                          "generation_time_ms": result.generation_time_ms, "usage": usage.model_dump()}, indent=2))
    else:
        if files:
            print(_table([[f.path, f.lines, f.action, f.backup or ""] for f in files],
                         ["file", "lines", "action", "backup"]))
        for err in result.report.errors:
            print(f"error: {err.path}: {err.error}")
        print(f"\n{result.status}: {len(files)} files, {sum(f.lines for f in files)} lines in "
              f"{result.generation_time_ms} ms; {usage.prompt_tokens} prompt + {usage.completion_tokens} "
              f"completion tokens")
    return 0 if result.status == "ok" else 1


def cmd_mcp(args: argparse.Namespace) -> int:
    """Run the MCP server on stdio."""
    from speedrun.mcp_bridge.server import main as serve

    serve()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="speedrun", description="Fast-model codegen with tests and surgical fixes.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check the key and that the generator endpoint answers")
    gen = sub.add_parser("generate", help="generate files from a prompt and write them to --out")
    gen.add_argument("prompt", nargs="?", help="the prompt text, or '-' to read stdin")
    gen.add_argument("--prompt-file", help="read the prompt from this file")
    gen.add_argument("--out", required=True, help="directory to write the files into")
    gen.add_argument("--system", help="extra system prompt")
    gen.add_argument("--context", action="append", help="existing file to show the model (repeatable)")
    gen.add_argument("--max-tokens", type=int, help="output token limit (default: sized to the prompt)")
    gen.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_parser("mcp", help="run the MCP server on stdio (for Claude Code and other MCP clients)")
    return parser


COMMANDS = {"check": cmd_check, "generate": cmd_generate}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `speedrun` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "mcp":
        return cmd_mcp(args)
    settings: Settings | None = None
    try:
        settings = load_settings()
        return asyncio.run(COMMANDS[args.command](settings, args))
    except SpeedRunError as exc:
        text = str(exc)
        for secret in settings.secrets() if settings else []:
            text = text.replace(secret, "***")
        _print_err(f"speedrun: {text}")
        return exc.exit_code
    except KeyboardInterrupt:
        _print_err("speedrun: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
