"""Every state and record type, declared once."""

from speedrun.state.records import (
    FileAction,
    FileError,
    GeneratedFile,
    LedgerEntry,
    TestFailure,
    TestReport,
    Usage,
    WriteReport,
    WrittenFile,
)

__all__ = ["FileAction", "FileError", "GeneratedFile", "LedgerEntry", "TestFailure", "TestReport", "Usage",
           "WriteReport", "WrittenFile"]
