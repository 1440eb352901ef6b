"""Read pytest's junit XML into counts and failures with workspace-relative locations and node ids."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from speedrun.state.records import TestFailure

__all__ = ["parse_junit"]

_MESSAGE_CAP = 1500  # characters per pytest failure message
_MAX_JUNIT_BYTES = 50 * 1024 * 1024


_FRAME_COLON = re.compile(r"^(?P<path>[^\s:<>][^:\n]*?):(?P<line>\d+):", re.MULTILINE)
_FRAME_PYTHON = re.compile(r'File "(?P<path>[^"\n]+)", line (?P<line>\d+)')
_LIBRARY_PARTS = {"site-packages", "dist-packages", ".venv", "venv", ".tox", ".nox"}


def _location(text: str, cwd: Path) -> tuple[str | None, int | None]:
    """The last ``path:line`` frame in ``text`` that is a file inside ``cwd`` (relative to it)."""
    matches = [*_FRAME_COLON.finditer(text), *_FRAME_PYTHON.finditer(text)]
    matches.sort(key=lambda m: m.start())
    root = cwd.resolve()
    for m in reversed(matches):
        raw = Path(m.group("path").strip())
        path = raw if raw.is_absolute() else cwd / raw
        try:
            rel = path.resolve().relative_to(root)
        except (ValueError, OSError):
            continue
        if _LIBRARY_PARTS.intersection(rel.parts) or not path.is_file():
            continue
        return rel.as_posix(), int(m.group("line"))
    return None, None


def _test_id(classname: str, name: str, cwd: Path) -> str:
    """Turn junit ``classname``/``name`` back into a pytest node id (``pkg/test_x.py::Cls::test``).

    pytest writes ``classname="pkg.test_x.Cls"``; the longest dotted prefix naming an existing
    ``.py`` file under ``cwd`` is the module. Failing that, leading lower-case segments are taken
    as the module path. Collection errors have an empty classname and the module in ``name``.
    """
    segs = classname.split(".") if classname else name.split(".")
    if classname:
        segs.append(name)
    segs = [s for s in segs if s]
    if not segs:
        return name or classname
    for i in range(len(segs), 0, -1):
        candidate = "/".join(segs[:i]) + ".py"
        if (cwd / candidate).is_file():
            return "::".join([candidate, *segs[i:]])
    if not classname:
        return name
    i = 0
    while i < len(segs) - 1 and not segs[i][:1].isupper():
        i += 1
    if i == 0:
        return "::".join(segs)
    return "::".join(["/".join(segs[:i]) + ".py", *segs[i:]])


def _failure_message(element: ET.Element) -> str:
    """``message`` attribute plus the ``E`` lines of the traceback (or its first lines), trimmed."""
    attr = (element.get("message") or "").strip()
    text = element.text or ""
    e_lines = [
        (ln[4:] if ln.startswith("E   ") else ln[1:].lstrip()).rstrip()
        for ln in text.splitlines()
        if ln.startswith("E ")
    ]
    e_lines = [ln for ln in e_lines if ln.strip()]
    if not e_lines:
        e_lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()][:20]
    body = [ln for ln in e_lines if ln.strip() not in attr]
    message = "\n".join([attr, *body] if attr else body).strip()
    if len(message) > _MESSAGE_CAP:
        message = message[: _MESSAGE_CAP - 14].rstrip() + "\n...[trimmed]"
    return message


def parse_junit(path: Path, cwd: Path, max_failures: int) -> dict[str, Any] | None:
    """Counts and failures from a pytest junit XML file, or None when it is missing or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_JUNIT_BYTES:
            return None
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures: list[TestFailure] = []
    for suite in suites:
        for key in counts:
            try:
                counts[key] += int(suite.get(key, "0"))
            except ValueError:
                pass
        for case in suite.iter("testcase"):
            for bad in (*case.findall("failure"), *case.findall("error")):
                if len(failures) >= max_failures:
                    break
                file, line = _location(bad.text or "", cwd)
                failures.append(
                    TestFailure(
                        name=_test_id(case.get("classname", ""), case.get("name", ""), cwd),
                        message=_failure_message(bad),
                        file=file,
                        line=line,
                    )
                )
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {
        "passed": max(passed, 0),
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "failures": failures,
    }
