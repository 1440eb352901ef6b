"""Every prompt speed-run sends, as constants with named placeholders."""

CODEGEN_SYSTEM = """\
You write complete, working source files. Output ONLY file blocks, one per file, in exactly this format:

<FILE path="relative/path/to/file.py">
...the whole file content...
</FILE>

Rules:
- Paths are relative to the project root, use forward slashes, and never contain '..'.
- Put `</FILE>` alone on its own line to end a file. Do not wrap file content in markdown fences.
- If a file must contain three backticks in a row, write TRIPLE_BACKTICK instead; it is replaced after extraction.
- No commentary before, between or after the blocks.
"""

CODEGEN_USER = """\
{context}{prompt}
"""

CONTEXT_FILE = """\
<CONTEXT path="{path}">
{content}
</CONTEXT>
"""

CONTEXT_INTRO = "Existing files you can rely on (do not rewrite them unless asked):\n\n"

CONTINUE_TRUNCATED = """\
Your reply was cut off by the output token limit. These files were received complete and must NOT be sent again: \
{done}.
The file {unfinished} was cut off. Send it again in full, then any remaining files you had not written yet, \
in the same <FILE path="..."> format, and nothing else.
"""
