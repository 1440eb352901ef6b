"""measure_tree on real sources in JavaScript, TypeScript, Go, Java, C and Rust, analysed with lizard.

Each fixture is a small, realistic file with the shapes a hand-written brace counter gets wrong: braces in
strings, comments, regular expressions, template literals, raw strings, runes and text blocks; Go headers
without parentheses; `interface{}` in a signature; callbacks with their own nesting. Expected LOC and
violations are worked out by hand in the comments.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from speedrun.judge.measure import measure_tree
from speedrun.state.judge import Measurement

# 41 lines; comments 1-3 and blank 5, 8, 27 -> 35.
# route: if (11) > for (12) > while (13) > if (15) is 4 deep; the regex /\}+$/ on line 14 and the
# template `${...}}` on 16 hold braces that are not blocks. `else if` stays at depth 1. onEach's callback is
# its own function (depth 2), and `.catch(` is a call, not a catch block.
ROUTER_JS = r"""// Router for a tiny HTTP server. Braces in comments: { { {
/* A block comment with a brace } and a string "{"
   spanning lines */
import { parse } from "node:url";

const ROUTE = /^\/items\/\{(\d+)\}$/;
const BANNER = `{ "service": "items", "url": "http://localhost/" }`;

export function route(req, handlers) {
  const url = parse(req.url);
  if (req.method === "GET") {
    for (const handler of handlers) {
      while (handler.busy) {
        const closing = /\}+$/;
        if (ROUTE.test(url.pathname) && handler.ready && !closing.test(url.pathname)) {
          return handler.run(`${url.pathname}}`);
        }
      }
    }
  } else if (req.method === "POST") {
    return null;
  } else {
    return "}";
  }
  return BANNER;
}

export function onEach(items) {
  if (items) {
    items.forEach(function (item) {
      if (item.ok) {
        if (item.value) {
          return item.value;
        }
      }
    });
  }
  return fetch("/x").catch((err) => {
    console.error(err);
  });
}
"""

# 38 lines; blank 2, 7, 13, 15, 23 and comment 8 -> 32. Lines 10-11 sit inside a raw string: code, though
# they look like comments. Drain: for (25) > select (26) > if (28) > if err := ...; (29) is 4 deep; the
# `interface{}` and `struct{}` in signatures and the rune '}' are no blocks.
SERVER_GO = r"""package server

import (
	"encoding/json"
	"errors"
)

// usage is printed by -help; its lines are text, not comments.
const usage = `
// items: serve the items API
/* flags: -addr, -debug */
`

var errEmpty = errors.New("{empty}")

func decode(raw []byte) (map[string]interface{}, error) {
	out := map[string]interface{}{}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) Drain(jobs <-chan Job, done chan struct{}) interface{} {
	for i := 0; i < s.workers; i++ {
		select {
		case job := <-jobs:
			if job.Payload != nil {
				if err := s.run(job); err != nil {
					s.log('}', err)
				}
			}
		case <-done:
			return nil
		}
	}
	return errEmpty
}
"""

# 47 lines; blank 2, 5, 16, 20; doc comment 6-8 -> 40. reserve: for (24) > synchronized (25) > try (26) >
# if (28) is 4 deep (the `else if` on 30 stays at 4); braces in the text block (12-14), the string "{"
# and the char '}' are no blocks; the lambda's `if` (41) is 1 deep.
INVENTORY_JAVA = r'''package shop;

import java.util.List;
import java.util.Map;

/**
 * Inventory with a brace in its docs: {@code Map<String, Integer>}.
 */
public class Inventory {
    private static final String OPEN = "{";
    private static final char CLOSE = '}';
    private static final String TEMPLATE = """
        {"sku": "%s",
        """;
    private final Map<String, Integer> stock;

    public Inventory(Map<String, Integer> stock) {
        this.stock = stock;
    }

    public int reserve(List<String> skus, int quantity) throws InterruptedException {
        int reserved = 0;
        outer:
        for (String sku : skus) {
            synchronized (stock) {
                try {
                    Integer left = stock.get(sku);
                    if (left == null) {
                        continue;
                    } else if (left < quantity) {
                        break outer;
                    }
                    stock.put(sku, left - quantity);
                    reserved++;
                } finally {
                    stock.notifyAll();
                }
            }
        }
        skus.forEach(sku -> {
            if (sku.startsWith(OPEN)) {
                System.out.println(TEMPLATE.formatted(CLOSE));
            }
        });
        return reserved;
    }
}
'''

# 37 lines; blank 3, 6, 13, 15, 36 and comment 7 -> 31, less the two #define lines lizard does not count
# -> 29. ring_push (signature over lines 16-18, brace on 19): for (23) > if (24) > while (25) > if (26).
RING_C = r"""#include <stdio.h>
#include <string.h>

#define RING_SIZE 64
#define RESET(r) do { (r)->head = 0; (r)->tail = 0; } while (0)

/* ring buffer; the format below has braces: "{%d}" */
struct ring {
    int head;
    int tail;
    char data[RING_SIZE];
};

static const char *FORMAT = "{%d}\n";

int ring_push(struct ring *r,
              const char *text,
              size_t len)
{
    if (r == NULL || text == NULL) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '{') {
            while (r->tail - r->head >= RING_SIZE) {
                if (r->head > 0) {
                    RESET(r);
                }
            }
        }
        r->data[r->tail++ % RING_SIZE] = text[i];
    }
    printf(FORMAT, r->tail);
    return 0;
}

int ring_empty(const struct ring *r) { return r->head == r->tail; }
"""

# 30 lines; blank 2, 22; doc comment 3 -> 27. render: for (7) > if let (8) > match (9) > arm block (10,
# not a control block) > if (11) is 4 deep. The raw string r#"{"literal": "}"}"#, the char literals and the
# lifetime 'a hold no blocks. retry: loop > if is 2 deep.
LIB_RS = r"""use std::collections::HashMap;

/// Renders `{key}` placeholders; doc comments are not code.
pub fn render<'a>(template: &'a str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::new();
    let raw = r#"{"literal": "}"}"#;
    for part in template.split('{') {
        if let Some((key, rest)) = part.split_once('}') {
            match vars.get(key) {
                Some(value) => {
                    if !value.is_empty() {
                        out.push_str(value);
                    }
                }
                None => out.push_str(raw),
            }
            out.push_str(rest);
        }
    }
    out
}

pub fn retry(mut attempts: u32) -> bool {
    loop {
        attempts -= 1;
        if attempts == 0 {
            break false;
        }
    }
}
"""

# 73 lines, 4 blank -> 69 (the two lines starting with /* are inside a template literal: code).
# reduce runs from its name (19) to its closing brace (72): 54 lines, none blank; 3 parameters.
CART_TS = r"""export interface Cart {
  items: Map<string, number>;
  total: number;
  coupon?: string;
}

type Action =
  | { kind: "add"; sku: string; price: number }
  | { kind: "remove"; sku: string; price: number }
  | { kind: "coupon"; code: string }
  | { kind: "restore"; saved: Map<string, number>; total: number }
  | { kind: "clear" };

const HELP = `
/* Cart actions: add, remove, coupon, clear.
   Every action returns a new cart. */
`;

export function reduce(
  cart: Cart,
  action: Action,
  discounts: Record<string, number> = {},
): Cart {
  const items = new Map(cart.items);
  let total = cart.total;
  let coupon = cart.coupon;
  switch (action.kind) {
    case "add": {
      const count = items.get(action.sku) ?? 0;
      items.set(action.sku, count + 1);
      total += action.price;
      break;
    }
    case "remove": {
      const count = items.get(action.sku) ?? 0;
      if (count <= 1) {
        items.delete(action.sku);
      } else {
        items.set(action.sku, count - 1);
      }
      total -= count > 0 ? action.price : 0;
      break;
    }
    case "coupon": {
      const rate = discounts[action.code];
      if (rate === undefined) {
        throw new Error(`unknown coupon: ${action.code}`);
      }
      coupon = action.code;
      total = total * (1 - rate);
      break;
    }
    case "restore": {
      for (const [sku, count] of action.saved) {
        items.set(sku, count);
      }
      total = action.total;
      break;
    }
    case "clear": {
      items.clear();
      total = 0;
      coupon = undefined;
      break;
    }
    default: {
      const never: never = action;
      throw new Error(`unhandled ${JSON.stringify(never)}`);
    }
  }
  return { items, total: Math.max(0, total), coupon };
}

"""


def _measure(root: Path, files: dict[str, str]) -> Measurement:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return measure_tree(root, name="impl")


@pytest.mark.parametrize(
    ("rel", "source", "language", "loc", "violation"),
    [
        ("web/router.js", ROUTER_JS, "JavaScript", 35, ("deep_nesting", 15, "route nests blocks 4 deep (limit 3)")),
        ("server.go", SERVER_GO, "Go", 32, ("deep_nesting", 29, "Drain nests blocks 4 deep (limit 3)")),
        (
            "src/Inventory.java",
            INVENTORY_JAVA,
            "Java",
            40,
            ("deep_nesting", 28, "Inventory::reserve nests blocks 4 deep (limit 3)"),
        ),
        ("ring.c", RING_C, "C", 29, ("deep_nesting", 26, "ring_push nests blocks 4 deep (limit 3)")),
        ("src/lib.rs", LIB_RS, "Rust", 27, ("deep_nesting", 11, "render nests blocks 4 deep (limit 3)")),
        (
            "src/cart.ts",
            CART_TS,
            "TypeScript",
            69,
            (
                "long_function",
                19,
                "reduce spans 54 lines (limit 50; NLOC 54, cyclomatic complexity 13, 3 parameters)",
            ),
        ),
    ],
)
def test_real_sources_give_their_loc_and_only_their_real_violation(
    tmp_path: Path, rel: str, source: str, language: str, loc: int, violation: tuple[str, int, str]
) -> None:
    measurement = _measure(tmp_path, {rel: source})
    assert measurement.loc == loc
    assert measurement.loc_by_language == {language: loc}
    assert [(v.kind, v.line, v.detail) for v in measurement.violations] == [violation]
    assert {v.file for v in measurement.violations} == {rel}
    assert f"{language} (1 file): analysed with lizard" in measurement.counted


def test_counted_reports_lizard_complexity_and_parameters(tmp_path: Path) -> None:
    """route's CCN: 1 + if + for + while + if + two && + else-if = 8, the highest in the file."""
    measurement = _measure(tmp_path, {"router.js": ROUTER_JS, "ring.c": RING_C})
    assert "cyclomatic complexity up to 8 (route in router.js:9)" in measurement.counted
    assert "up to 3 parameters (ring_push in ring.c:16)" in measurement.counted
    assert "single-letter names and magic numbers not counted" in measurement.counted


def test_a_tree_of_five_languages_sums_per_language(tmp_path: Path) -> None:
    files = {
        "web/router.js": ROUTER_JS,
        "server.go": SERVER_GO,
        "src/Inventory.java": INVENTORY_JAVA,
        "native/ring.c": RING_C,
        "src/lib.rs": LIB_RS,
        "web/router.test.js": ROUTER_JS,
    }
    measurement = _measure(tmp_path, files)
    assert measurement.loc_by_language == {"C": 29, "Go": 32, "Java": 40, "JavaScript": 70, "Rust": 27}
    assert measurement.loc == 198 and measurement.test_loc == 35
    assert measurement.violation_counts()["deep_nesting"] == 5
    assert [(v.file, v.line) for v in measurement.test_violations] == [("web/router.test.js", 15)]


def test_ruby_gets_long_functions_from_lizard_but_no_nesting(tmp_path: Path) -> None:
    lines = ["class Report", "  # Builds the monthly report.", "  def build(rows)", "    out = <<~TEXT"]
    lines += [f"    row {n}: #{{rows[{n}]}}" for n in range(50)]
    lines += ["    TEXT", "    out", "  end", "end"]
    measurement = _measure(tmp_path, {"report.rb": "\n".join(lines) + "\n"})
    # 58 lines, one of them a comment; the method runs from line 3 to its `end` on 57
    assert measurement.loc == 57
    assert [(v.kind, v.line) for v in measurement.violations] == [("long_function", 3)]
    assert measurement.violations[0].detail.startswith("build spans 55 lines (limit 50;")


def test_a_file_lizard_fails_on_is_named_and_the_rest_still_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lizard re-raises IndexError on a file it cannot parse; one such file must not sink the judgement."""
    import lizard

    real = lizard.FileAnalyzer.analyze_source_code

    def fail_on_go(self: object, filename: str, code: str) -> object:
        if filename.endswith(".go"):
            raise IndexError("list index out of range")
        return real(self, filename, code)

    monkeypatch.setattr(lizard.FileAnalyzer, "analyze_source_code", fail_on_go)
    measurement = _measure(tmp_path, {"server.go": SERVER_GO, "lib.rs": LIB_RS})
    assert measurement.loc_by_language == {"Go": 33, "Rust": 27}  # Go: its 33 non-blank lines, comment included
    assert [v.file for v in measurement.violations] == ["lib.rs"]
    assert "server.go (lizard failed: IndexError)" in measurement.counted


def test_parallel_measurements_agree_with_one_alone(tmp_path: Path) -> None:
    """The judge measures implementations in threads: lizard's per-file state must not leak between them."""
    files = {"router.js": ROUTER_JS, "server.go": SERVER_GO, "lib.rs": LIB_RS, "ring.c": RING_C}
    roots = []
    for index in range(4):
        root = tmp_path / f"impl{index}"
        root.mkdir()
        _measure(root, files)
        roots.append(root)
    alone = measure_tree(roots[0], name="impl")
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda root: measure_tree(root, name="impl"), roots * 3))
    assert all(m == alone for m in together)


def test_lizard_is_not_imported_with_the_module() -> None:
    """The MCP server imports the judge at start-up; lizard loads on the first measurement."""
    code = (
        "import sys, pathlib, tempfile; import speedrun.judge.measure as m; print('lizard' in sys.modules); "
        "d = pathlib.Path(tempfile.mkdtemp()); (d / 'a.js').write_text('let v = 1;\\n'); m.measure_tree(d); "
        "print('lizard' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "True"]
