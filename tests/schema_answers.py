"""Answers a schema-constrained model would give: built from the JSON schema a structured request carries."""

from __future__ import annotations

import json
import re


def request_text(body: dict) -> str:
    return "\n".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))


def request_schema(body: dict) -> dict:
    """The JSON schema a structured request asks for: from response_format json_schema, else from the prompt."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["schema"]
    text = request_text(body)
    decoder = json.JSONDecoder()
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        try:
            found, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(found, dict) and found.get("type") == "object" and "properties" in found:
            return found
    raise AssertionError("no JSON schema in the request")


def follow_schema(schema: dict, root: dict | None = None, flip: list[int] | None = None) -> object:
    """A value that satisfies `schema` and nothing more, the way a schema-constrained decoder answers:
    every required property, the lowest allowed number, the first enum value, arbitrary strings, empty
    arrays unless minItems asks for more, booleans alternating."""
    root = root or schema
    flip = flip if flip is not None else [0]
    if "$ref" in schema:
        return follow_schema(root["$defs"][schema["$ref"].rsplit("/", 1)[-1]], root, flip)
    if "anyOf" in schema:
        return follow_schema(schema["anyOf"][0], root, flip)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        return {
            key: follow_schema(sub, root, flip)
            for key, sub in schema.get("properties", {}).items()
            if key in schema.get("required", [])
        }
    if kind == "array":
        return [follow_schema(schema["items"], root, flip) for _ in range(schema.get("minItems", 0))]
    if kind == "boolean":
        flip[0] += 1
        return flip[0] % 2 == 0
    if kind in ("integer", "number"):
        return schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
    if kind == "string":
        return "zq" * max(1, schema.get("minLength", 1))
    raise AssertionError(f"unexpected schema {schema}")
