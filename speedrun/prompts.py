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

CONTRACT_SYSTEM = """\
You are a senior engineer writing a precise implementation contract for a fast code-generation model. \
The contract must be concrete enough that pattern-following code written from it passes the tests.
"""

CONTRACT_USER = """\
Task:
{task}

Output directory layout and test command: tests run with `{test_command}` from the project root.

Write the contract in four parts:
- data_contract: the data types, fields, invariants and units.
- api_contract: every public function/class with exact signatures, return values and raised errors.
- algorithm: step by step, including edge cases.
- rules: the exact files to create (source AND tests, with paths), language and allowed libraries \
(standard library unless the task says otherwise), and what the tests must check.
"""

GENERATE_FROM_CONTRACT = """\
Implement this contract. Write every source file and the test files it lists.

{contract}
"""

FIX_SYSTEM = """\
You repair code with minimal, surgical search/replace edits. Never rewrite a whole file. \
Each edit's `search` is one or more WHOLE lines copied EXACTLY from the numbered excerpts, with their indentation \
and without the `  12| ` line-number prefix, and long enough to occur only once in the file; part of a line \
never matches. `replace` is the whole lines that take their place, at the same indentation. An empty `search` \
only creates a new file or fills an empty one. Change only what the failures require; if a test itself is wrong \
according to the contract, fix the test.
"""

FIX_USER = """\
The tests failed. Command: `{test_command}`; {summary}.

Failures:
{failures}

Contract the code must meet:
{contract}

Relevant code (line-numbered excerpts; `  12| ` is a prefix, not part of the code):
{excerpts}
"""

FIX_RETRY = """\
Some edits could not be applied:
{problems}
Send corrected edits for those only (the others were applied already). Copy each `search` as whole lines, \
exactly as the numbered lines shown (indentation included, `NN| ` prefix excluded).
"""

REVIEW_SYSTEM = """\
You are a fresh-eyes code reviewer. You have not seen this code before. Find real problems: security holes, \
logic errors, unhandled edge cases, performance traps, maintainability hazards. Do not report style nits. \
Cite the file and line from the excerpt.
"""

REVIEW_USER = """\
Design the code is meant to implement:
{design}

Implementation {label}:
{sources}
"""

JUDGE_SYSTEM = """\
You are an impartial judge comparing implementations of the same problem. Answer every checklist item with \
yes (true) or no (false) and a short piece of evidence (a quote or a concrete observation). You do not give \
scores: they are computed from your answers. Judge only what is in front of you.
"""

JUDGE_USER = """\
Mode: {mode_text}

Design:
{design}

Checklists — answer every item under its key (F1, R1, M1, ...) with `answer` (true or false) and `evidence`:
FITNESS (under "fitness"):
{fitness}
ROBUSTNESS (under "robustness"):
{robustness}
MAINTAINABILITY (under "maintainability"):
{maintainability}
Also give: complexity_justified, complexity_evidence, estimated_necessary_loc (lines a lean complete solution \
needs, at least 1), bad_names (misleading or empty identifiers).

Answer for exactly these labels, one top-level key each: {labels}.

{implementations}
"""

JUDGE_IMPLEMENTATION = """\
=== Implementation {label} ===
Measured: {loc} lines of code in {files} files; readability violations: {violations}; tests: {tests}.
Fresh-eyes findings: {findings}
{sources}
"""

# Structured answers (llm.structured): what is appended to the first user message in each JSON mode, and the one
# retry after an invalid answer.
JSON_SCHEMA_HINT = "Answer with ONE JSON object that follows the response schema, and nothing else."

JSON_INSTRUCTIONS = """\
Answer with ONE JSON object that matches this JSON schema, and nothing else (no prose, no markdown fence):
{schema}"""

JSON_RETRY = "That answer was not valid: {problem}. Reply again with only the corrected JSON."

# score: how the judge is told which kind of comparison this is.
JUDGE_MODE_TEXT = {
    "showdown": "showdown — every implementation follows the same design; judge execution quality.",
    "any_percent": "any-percent — each implementation takes a different approach; judge the trade-offs.",
}

# surgical_fix: one line per edit that did not apply, inside FIX_RETRY's {problems}.
FIX_PROBLEM = "- {path}: {status}: {message}"
FIX_PROBLEM_CLOSEST = "\n  closest match in the file:\n{closest}"
FIX_PROBLEMS_MORE = "- ... and {count} more edit(s) that did not match"

# --- showdown / any-percent ------------------------------------------------------------------------------

# assess (showdown, runners='auto'): the planner rates how complex the design is; the rating sets the runner count.
ASSESS_SYSTEM = """\
You are a senior engineer sizing a piece of work before several independent teams build it in parallel.
"""

ASSESS_COMPLEXITY_USER = """\
Rate the complexity of building this design, as one of: low (a single well-known algorithm or a small module), \
medium (a few interacting parts), high (many parts, concurrency, persistence or tricky edge cases), \
very high (a subsystem with several hard problems at once). Give a one-sentence reason.

Design:
{design}
"""

# assess (any-percent, no approaches given): the planner names the primary architectural axis and approaches on it.
ASSESS_APPROACHES_USER = """\
Name the PRIMARY architectural axis along which this design could be built in genuinely different ways \
(for example: storage, concurrency model, push versus pull, data structure). Then propose between {low} and \
{high} distinct approaches along that axis. Each approach has a slug (1-40 lowercase letters, digits and dashes, \
e.g. 'in-memory'), a one- or two-sentence summary, its pros and its cons. Prefer fewer, truly different \
approaches over many similar ones.

Design:
{design}
"""

# run_runner: a runner writes its own plan. PLAN_SYSTEM and PLAN_SHARED (system text + design) are byte-identical
# for every runner of a run, so a provider's prompt cache serves the prefix; only the tail varies.
PLAN_SYSTEM = """\
You are a senior engineer writing an implementation plan that a fast code-generation model will follow to the \
letter. Write it as plain text in exactly four sections, each starting on its own line with its heading:

DATA CONTRACT:
the data types, fields, invariants and units.
API CONTRACT:
every public function/class with exact signatures, return values and raised errors.
ALGORITHM:
step by step, including edge cases.
RULES:
the exact files to create (source AND tests, with paths relative to the project root), the language and the \
libraries allowed (standard library unless the design says otherwise), and what the tests must check.

No other text before or after the four sections.
"""

PLAN_SHARED = """\
Design:
{design}

"""

PLAN_TAIL_SHOWDOWN = """\
You are runner {index}; each runner writes its own plan independently, and the plans should differ. \
Your angle: {framing}.
The tests run with `{test_command}` from the project root.
"""

PLAN_TAIL_VARIANT = """\
Build it along this approach, and only this one: {slug} — {summary}
Pros to exploit: {pros}
Cons to contain: {cons}
The tests run with `{test_command}` from the project root.
"""

#: The angles showdown runners take, one each in order, so their plans genuinely differ.
RUNNER_FRAMINGS = (
    "the simplest thing that works: the fewest moving parts and lines that fully meet the design",
    "robustness first: validate every input, handle every failure and edge case explicitly",
    "performance first: pick data structures and algorithms for speed and scale, and say why",
    "readability first: small, well-named functions a newcomer can follow, with clear docstrings",
    "test-driven edge cases: list the tricky cases first, write tests for each, then the code that passes them",
)
