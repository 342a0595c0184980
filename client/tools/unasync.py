"""Generate `budgeting_client/_sync/*.py` from `budgeting_client/_async/*.py`.

The client is written once, in async form; the sync form is derived by token rewriting (the
approach httpcore takes), then sorted and formatted with ruff so it is lint-clean.

    python client/tools/unasync.py          # rewrite the generated files
    python client/tools/unasync.py --check  # exit 1 when they are out of date (CI, tests)

A line may carry `# sync: <code>` to say what it becomes in the sync form, or `# sync-drop`
to be left out of it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "budgeting_client"
SOURCE = PACKAGE / "_async"
TARGET = PACKAGE / "_sync"

HEADER = (
    "# GENERATED from budgeting_client/_async/{name} by client/tools/unasync.py: do not edit.\n"
)

REPLACEMENTS: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    (r"\bhttpx\.AsyncBaseTransport\b", "httpx.BaseTransport"),
    (r"\bAsyncBudgetClient\b", "BudgetClient"),
    (r"\bAsyncBudgeted\b", "Budgeted"),
    (r"\bAsyncReceiptVerifier\b", "ReceiptVerifier"),
    (r"\bbudgeting_client\._async\b", "budgeting_client._sync"),
]
DIRECTIVE = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# sync: (?P<sync>.*)$")


def transform(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.rstrip().endswith("# sync-drop"):
            continue
        match = DIRECTIVE.match(line.rstrip("\n"))
        if match:
            line = f"{match['indent']}{match['sync']}\n"
        else:
            for pattern, replacement in REPLACEMENTS:
                line = re.sub(pattern, replacement, line)
        lines.append(line)
    return "".join(lines)


def ruff(args: list[str], code: str, filename: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(filename), "-"],
        input=code,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout:
        raise SystemExit(f"ruff {' '.join(args)} failed on {filename}:\n{result.stderr}")
    return result.stdout


def generate(source: Path) -> tuple[Path, str]:
    target = TARGET / source.name
    code = HEADER.format(name=source.name) + transform(source.read_text())
    code = ruff(["check", "--fix", "--select", "I,F401", "--quiet", "--exit-zero"], code, target)
    code = ruff(["format", "--quiet"], code, target)
    return target, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    options = parser.parse_args()
    stale = []
    TARGET.mkdir(exist_ok=True)
    for source in sorted(SOURCE.glob("*.py")):
        target, code = generate(source)
        current = target.read_text() if target.exists() else None
        if current == code:
            continue
        stale.append(target)
        if not options.check:
            target.write_text(code)
    for path in stale:
        verb = "out of date" if options.check else "written"
        print(f"{path.relative_to(PACKAGE.parent)}: {verb}")
    return 1 if options.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
