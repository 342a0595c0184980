"""Bulk cost recording from a CSV or JSON-lines file (`budgetctl record --file`).

Every line gets a stable `idempotency_key`, so running the same file again (after a crash, a
timeout, a fixed line) never records anything twice: the service answers `duplicate` for the
lines it already has. See docs/client-bulk-record-keys.md for why the key is derived from the
record's content and not from its line number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from budgeting_client.errors import PayloadTooLarge, ValidationError

if TYPE_CHECKING:
    from budgeting_client._sync.client import BudgetClient

MAX_BATCH = 1000
KEY_PREFIX = "bctl-"
JSON_COLUMNS = ("tags", "operation_context")


@dataclass
class Line:
    number: int  # 1-based line of the file (CSV: the line the row starts on)
    record: dict[str, Any] | None
    error: str | None = None


@dataclass
class Failure:
    line: int
    error_code: str
    message: str
    idempotency_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "error_code": self.error_code,
            "message": self.message,
            "idempotency_key": self.idempotency_key,
        }


@dataclass
class Summary:
    total: int = 0
    created: int = 0
    duplicate: int = 0
    failed: int = 0
    batches: int = 0
    failures: list[Failure] = field(default_factory=list)
    aborted: str | None = None  # why the run stopped early (nothing after it was sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "created": self.created,
            "duplicate": self.duplicate,
            "failed": self.failed,
            "batches": self.batches,
            "aborted": self.aborted,
            "failures": [f.as_dict() for f in self.failures],
        }


def detect_format(path: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    lowered = path.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "csv"


def _csv_record(row: dict[str, str | None]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for raw_key, raw_value in row.items():
        if raw_key is None:
            raise ValueError("more cells than header columns")
        key = raw_key.strip()
        value = (raw_value or "").strip()
        if not key or value == "":
            continue
        if key.startswith(("tag:", "tag.")):
            tags[key[4:]] = value
        elif key in JSON_COLUMNS:
            try:
                record[key] = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"column {key} is not JSON: {exc}") from exc
        else:
            record[key] = value
    if tags:
        record.setdefault("tags", {}).update(tags)
    return record


def read_lines(path: str, fmt: str) -> list[Line]:
    """Every record of the file with its line number; a line that cannot be parsed is kept
    with its error (it is reported as failed and never sent)."""
    text = Path(path).read_text(encoding="utf-8-sig") if path != "-" else _stdin()
    lines: list[Line] = []
    if fmt == "jsonl":
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw, parse_float=Decimal)
            except ValueError as exc:
                lines.append(Line(number, None, f"not JSON: {exc}"))
                continue
            if not isinstance(value, dict):
                lines.append(Line(number, None, "not a JSON object"))
                continue
            lines.append(Line(number, value))
        return lines
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames  # reads the header row
    except csv.Error as exc:
        return [Line(1, None, f"bad CSV header: {exc}")]
    if not header:
        return []
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            lines.append(Line(start, None, f"bad CSV: {exc}"))
            start = reader.line_num + 1
            continue
        try:
            lines.append(Line(start, _csv_record(row)))
        except ValueError as exc:
            lines.append(Line(start, None, str(exc)))
        start = reader.line_num + 1
    return lines


def _stdin() -> str:  # pragma: no cover - exercised by hand
    import sys

    return sys.stdin.read()


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def assign_keys(lines: Sequence[Line], namespace: str = "") -> None:
    """Give every parsed record an `idempotency_key` unless it carries one.

    key = prefix + sha256(namespace, canonical record, n), where n counts the identical
    records before it in the file: stable when the file is rerun, appended to or has a line
    fixed; two identical lines stay two records.
    """
    seen: Counter[str] = Counter()
    for line in lines:
        record = line.record
        if record is None or record.get("idempotency_key"):
            continue
        canonical = _canonical(record)
        occurrence = seen[canonical]
        seen[canonical] += 1
        digest = hashlib.sha256(f"{namespace}\x1f{canonical}\x1f{occurrence}".encode()).hexdigest()
        record["idempotency_key"] = KEY_PREFIX + digest[:48]


def chunks(items: Sequence[Line], size: int) -> Iterator[Sequence[Line]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def record_file(
    client: BudgetClient,
    lines: Sequence[Line],
    *,
    batch_size: int = MAX_BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Send the records in batches; count created, duplicate and failed lines.

    A batch the service refuses as a whole (400/413) is split in halves until the lines at
    fault are found, so one bad line never fails its 999 neighbours. Any other error (auth,
    the service down after the retries) stops the run: what was sent is counted, and a rerun
    of the same file picks up where it stopped without recording anything twice.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch size must be within 1..{MAX_BATCH}")
    summary = Summary(total=len(lines))
    progress = on_progress or (lambda n: None)
    good = []
    for line in lines:
        if line.record is None:
            summary.failed += 1
            summary.failures.append(Failure(line.number, "PARSE_ERROR", line.error or "bad line"))
            progress(1)
        else:
            good.append(line)
    for batch in chunks(good, batch_size):
        _send(client, batch, summary, progress)
        if summary.aborted:
            break
    summary.failures.sort(key=lambda f: f.line)
    return summary


def _send(
    client: BudgetClient,
    batch: Sequence[Line],
    summary: Summary,
    progress: Callable[[int], None],
) -> None:
    records = [line.record for line in batch if line.record is not None]
    try:
        result = client.record_costs_batch(records)
    except (ValidationError, PayloadTooLarge) as exc:
        if len(batch) > 1:
            middle = len(batch) // 2
            _send(client, batch[:middle], summary, progress)
            if not summary.aborted:
                _send(client, batch[middle:], summary, progress)
            return
        line = batch[0]
        summary.failed += 1
        summary.failures.append(
            Failure(line.number, exc.error_code, _message(exc), records[0].get("idempotency_key"))
        )
        progress(1)
        return
    summary.batches += 1
    by_index = {item.index: item for item in result.results}
    for index, line in enumerate(batch):
        item = by_index.get(index)
        status = item.status if item else "failed"
        if status == "created":
            summary.created += 1
        elif status == "duplicate":
            summary.duplicate += 1
        else:
            summary.failed += 1
            summary.failures.append(
                Failure(
                    line.number,
                    (item.error_code if item else None) or "FAILED",
                    (item.message if item else None) or "no result for this line",
                    line.record.get("idempotency_key") if line.record else None,
                )
            )
    progress(len(batch))


def _message(exc: ValidationError | PayloadTooLarge) -> str:
    if exc.details:
        return f"{exc.message}: {json.dumps(exc.details, default=str, sort_keys=True)}"
    return exc.message
