"""Every state and record type, declared once."""

from speedrun.state.records import (
    FileAction,
    FileError,
    GeneratedFile,
    GenerateResult,
    LedgerEntry,
    NextAction,
    RunList,
    RunRow,
    RunStatus,
    StatusResult,
    TestFailure,
    TestReport,
    Usage,
    WriteFilesResult,
    WriteReport,
    WrittenFile,
)

__all__ = [
    "FileAction",
    "FileError",
    "GeneratedFile",
    "LedgerEntry",
    "TestFailure",
    "TestReport",
    "Usage",
    "WriteReport",
    "WrittenFile",
    "GenerateResult",
    "StatusResult",
    "WriteFilesResult",
    "NextAction",
    "RunStatus",
    "RunRow",
    "RunList",
]


def checkpoint_types() -> list[tuple[str, str]]:
    """(module, class) of every record that may sit in a checkpoint: the checkpointer's deserialization allow-list."""
    import importlib
    import inspect
    import pkgutil

    from pydantic import BaseModel

    found: list[tuple[str, str]] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseModel) and cls.__module__ == module.__name__:
                found.append((cls.__module__, cls.__name__))
    return found
