"""Every state and record type, declared once."""

from speedrun.state.records import (
    FileAction,
    FileError,
    GenerateResult,
    StatusResult,
    WriteFilesResult,
    GeneratedFile,
    LedgerEntry,
    TestFailure,
    TestReport,
    Usage,
    WriteReport,
    WrittenFile,
)

__all__ = ["FileAction", "FileError", "GeneratedFile", "LedgerEntry", "TestFailure", "TestReport", "Usage",
           "WriteReport", "WrittenFile", "GenerateResult", "StatusResult", "WriteFilesResult"]
