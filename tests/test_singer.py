"""The Singer tap over the outbox, run as Meltano runs it: a subprocess writing JSON lines.

The message and catalog shapes are checked against JSON Schemas of the Singer spec written
here (a reference parser such as singer-sdk pulls in ~20 packages; see docs), and every
RECORD against the schema its stream announced (Draft 7).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from moneyed import Money

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.events.catalog import load_all_primitives
from finfactory.events.envelope import EventEnvelope
from finfactory.events.outbox import OutboxReader
from finfactory.events.registry import REGISTRY
from finfactory.events.singer import main
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds

ROOT = Path(__file__).resolve().parents[1]

_STRINGS = {"type": "array", "items": {"type": "string"}}
SINGER_MESSAGE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "type": {"const": "SCHEMA"},
                "stream": {"type": "string", "minLength": 1},
                "schema": {"type": "object", "required": ["type", "properties"]},
                "key_properties": _STRINGS,
                "bookmark_properties": _STRINGS,
            },
            "required": ["type", "stream", "schema", "key_properties"],
        },
        {
            "type": "object",
            "properties": {
                "type": {"const": "RECORD"},
                "stream": {"type": "string", "minLength": 1},
                "record": {"type": "object"},
                "time_extracted": {"type": "string", "format": "date-time"},
                "version": {"type": "integer"},
            },
            "required": ["type", "stream", "record"],
        },
        {
            "type": "object",
            "properties": {"type": {"const": "STATE"}, "value": {"type": "object"}},
            "required": ["type", "value"],
        },
    ],
}
SINGER_CATALOG = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["streams"],
    "properties": {
        "streams": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tap_stream_id", "stream", "schema", "metadata"],
                "properties": {
                    "tap_stream_id": {"type": "string", "minLength": 1},
                    "stream": {"type": "string", "minLength": 1},
                    "schema": {"type": "object", "required": ["type", "properties"]},
                    "key_properties": _STRINGS,
                    "replication_key": {"type": "string"},
                    "replication_method": {"enum": ["INCREMENTAL", "FULL_TABLE", "LOG_BASED"]},
                    "metadata": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["breadcrumb", "metadata"],
                            "properties": {
                                "breadcrumb": _STRINGS,
                                "metadata": {
                                    "type": "object",
                                    "properties": {
                                        "inclusion": {
                                            "enum": ["available", "automatic", "unsupported"]
                                        },
                                        "selected": {"type": "boolean"},
                                        "selected-by-default": {"type": "boolean"},
                                        "table-key-properties": _STRINGS,
                                        "valid-replication-keys": _STRINGS,
                                        "forced-replication-method": {
                                            "enum": ["INCREMENTAL", "FULL_TABLE", "LOG_BASED"]
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
MESSAGE_VALIDATOR = Draft7Validator(SINGER_MESSAGE, format_checker=Draft7Validator.FORMAT_CHECKER)


def php(amount: str) -> Money:
    return Money(amount, "PHP")


@attrs.define
class Books:
    """A SQLite ledger file with some history: accounts, journals, a hold, a reversal."""

    path: Path
    engine: sa.Engine
    ledger: LedgerService
    ctx: RequestContext
    cash: str
    wallet: str
    posted: int = 0

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def transfer(self, amount: str) -> str:
        self.posted += 1
        journal = self.ledger.post_journal(
            self.ctx,
            c.PostJournal(
                reference=f"t-{self.posted}",
                legs=[
                    c.Leg(account_id=self.cash, direction="debit", amount=php(amount)),
                    c.Leg(account_id=self.wallet, direction="credit", amount=php(amount)),
                ],
            ),
        )
        return journal.id

    def events(self) -> list[EventEnvelope]:
        return OutboxReader(SqlStorage(self.engine)).read(0, 100_000)


@pytest.fixture
def books(tmp_path: Path) -> Iterator[Books]:
    path = tmp_path / "books.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine)
    ledger = LedgerService(SqlStorage(engine), default_policy(), ManualClock(), SequentialIds())
    ctx = RequestContext(
        tenant_id="tenant-a", actor=Actor("ops-1", ActorKind.USER, frozenset({"admin"}))
    )
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    wallet = ledger.open_account(ctx, c.OpenAccount(code="w", currency="PHP", type="liability"))
    b = Books(path, engine, ledger, ctx, cash.id, wallet.id)
    first = b.transfer("100.00")
    b.transfer("0.10")
    hold = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="h-1",
            debit_account_id=wallet.id,
            credit_account_id=cash.id,
            amount=php("7.25"),
        ),
    )
    ledger.capture_hold(ctx, c.CaptureHold(hold_id=hold.id, reference="cap-1", amount=php("5.00")))
    ledger.reverse_journal(ctx, c.ReverseJournal(journal_id=first, reference="rev-1"))
    ledger.change_account_status(
        ctx, c.ChangeAccountStatus(account_id=wallet.id, status="frozen", reason="kyc")
    )
    ledger.change_account_status(
        ctx, c.ChangeAccountStatus(account_id=wallet.id, status="active", reason="ok")
    )
    yield b
    engine.dispose()


def run_tap(tmp_path: Path, config: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    """The tap's stdout: one JSON message a line (``--discover``: one JSON document)."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "finfactory.events.singer", "--config", str(config_file), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if "--discover" in args:
        return [json.loads(done.stdout)]
    return [json.loads(line) for line in done.stdout.splitlines()]


def check_messages(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Spec shape, SCHEMA before a stream's RECORDs, records valid: the stream schemas."""
    schemas: dict[str, dict[str, Any]] = {}
    for message in messages:
        MESSAGE_VALIDATOR.validate(message)
        if message["type"] == "SCHEMA":
            Draft7Validator.check_schema(message["schema"])
            assert "$ref" not in json.dumps(message["schema"])
            schemas[message["stream"]] = message["schema"]
        elif message["type"] == "RECORD":
            assert message["stream"] in schemas, "RECORD before its stream's SCHEMA"
            Draft7Validator(
                schemas[message["stream"]], format_checker=Draft7Validator.FORMAT_CHECKER
            ).validate(message["record"])
    return schemas


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD"]


def positions_in_states(messages: list[dict[str, Any]]) -> list[int]:
    """The bookmark of each STATE (all streams share it here)."""
    out = []
    for m in messages:
        if m["type"] == "STATE":
            values = {b["replication_key_value"] for b in m["value"]["bookmarks"].values()}
            assert len(values) == 1
            out.append(values.pop())
    return out


def walk(value: Any) -> list[Any]:
    found = [value]
    if isinstance(value, dict):
        for item in value.values():
            found.extend(walk(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(walk(item))
    return found


def test_a_sync_emits_schema_then_valid_records_then_increasing_state(
    books: Books, tmp_path: Path
) -> None:
    events = books.events()
    messages = run_tap(tmp_path, {"database_url": books.url, "batch_size": 4})
    schemas = check_messages(messages)

    load_all_primitives()
    # Every stream is announced up front, whether or not it has events yet.
    assert set(schemas) == {f"{t.name.replace('.', '_')}_v{t.version}" for t in REGISTRY}
    got = records(messages)
    assert [r["id"] for r in got] == [e.id for e in events]  # all of them, in commit order
    for message in (m for m in messages if m["type"] == "RECORD"):
        record = message["record"]
        assert message["stream"] == f"{record['event_type'].replace('.', '_')}_v1"
        assert record["position"] > 0
    assert {r["event_type"] for r in got} >= {
        "ledger.account.opened",
        "ledger.account.status_changed",
        "journal.posted",
        "balance.updated",
        "hold.created",
        "hold.released",
        "transaction.reversed",
    }

    # Money is exact decimal text, never a JSON number.
    amounts = [
        node["amount"]
        for node in walk(got)
        if isinstance(node, dict) and set(node) == {"amount", "currency"}
    ]
    assert amounts
    assert all(isinstance(a, str) for a in amounts)
    assert Decimal("0.10") in {Decimal(a) for a in amounts}
    assert not any(isinstance(v, float) for v in walk(got))
    money_schema = schemas["hold_created_v1"]["properties"]["payload"]["properties"]["amount"]
    assert money_schema["properties"]["amount"] == {"type": "string", "format": "singer.decimal"}

    # A STATE after every batch of 4, bookmarks strictly increasing, ending at the last event.
    states = positions_in_states(messages)
    assert states == sorted(set(states))
    assert len(states) == -(-len(events) // 4)
    assert states[-1] == events[-1].position
    assert messages[-1]["type"] == "STATE"


def test_a_second_run_resumes_after_the_bookmark(books: Books, tmp_path: Path) -> None:
    config = {"database_url": books.url, "batch_size": 50}
    first = run_tap(tmp_path, config)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(first[-1]["value"]))

    again = run_tap(tmp_path, config, "--state", str(state_file))
    check_messages(again)
    assert records(again) == []
    assert again[-1]["value"] == first[-1]["value"]

    before = {e.id for e in books.events()}
    books.transfer("3.33")
    new = [e for e in books.events() if e.id not in before]
    resumed = run_tap(tmp_path, config, "--state", str(state_file))
    check_messages(resumed)
    assert [r["id"] for r in records(resumed)] == [e.id for e in new]
    assert {r["event_type"] for r in records(resumed)} == {"journal.posted", "balance.updated"}
    assert positions_in_states(resumed) == [new[-1].position]
    assert positions_in_states(resumed)[0] > positions_in_states(first)[-1]


def test_discover_prints_a_catalog_and_a_catalog_selects_streams_and_fields(
    books: Books, tmp_path: Path
) -> None:
    config = {"database_url": books.url}
    (catalog,) = run_tap(tmp_path, config, "--discover")
    Draft7Validator(SINGER_CATALOG).validate(catalog)
    load_all_primitives()
    assert len(catalog["streams"]) == len(REGISTRY)
    for stream in catalog["streams"]:
        Draft7Validator.check_schema(stream["schema"])
        assert "$ref" not in json.dumps(stream["schema"])
        root = next(m["metadata"] for m in stream["metadata"] if m["breadcrumb"] == [])
        assert root["table-key-properties"] == ["id"]
        assert root["valid-replication-keys"] == ["position"]
        assert stream["replication_key"] == "position"
        crumbs = {tuple(m["breadcrumb"]) for m in stream["metadata"]}
        assert crumbs == {(), *(("properties", p) for p in stream["schema"]["properties"])}

    # Select one stream and leave one of its fields out, as `meltano select` would.
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] == "journal_posted_v1"
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = chosen
            elif entry["breadcrumb"] in (["properties", "trace_id"], ["properties", "id"]):
                entry["metadata"]["selected"] = False  # id is automatic: kept anyway
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    messages = run_tap(tmp_path, config, "--catalog", str(catalog_file))
    schemas = check_messages(messages)
    assert list(schemas) == ["journal_posted_v1"]
    assert "trace_id" not in schemas["journal_posted_v1"]["properties"]
    got = records(messages)
    assert len(got) == len([e for e in books.events() if e.event_type == "journal.posted"])
    assert all("trace_id" not in r and "id" in r for r in got)
    assert set(messages[-1]["value"]["bookmarks"]) == {"journal_posted_v1"}


def test_config_streams_and_tenant_narrow_the_export(books: Books, tmp_path: Path) -> None:
    other = RequestContext(
        tenant_id="tenant-b", actor=Actor("ops-2", ActorKind.USER, frozenset({"admin"}))
    )
    books.ledger.open_account(other, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    config = {"database_url": books.url, "tenant_id": "tenant-b", "streams": ["balance.updated"]}
    (catalog,) = run_tap(tmp_path, config, "--discover")
    assert [s["tap_stream_id"] for s in catalog["streams"]] == ["balance_updated_v1"]
    assert records(run_tap(tmp_path, config)) == []

    config["streams"] = ["ledger.account.opened", "balance.updated"]
    got = records(run_tap(tmp_path, config))
    assert [(r["tenant_id"], r["event_type"]) for r in got] == [
        ("tenant-b", "ledger.account.opened")
    ]


def _tap(tmp_path: Path, config: Any, *args: str, state: Any = None) -> int:
    config_file = tmp_path / "bad-config.json"
    config_file.write_text(json.dumps(config))
    extra = list(args)
    if state is not None:
        state_file = tmp_path / "bad-state.json"
        state_file.write_text(json.dumps(state))
        extra += ["--state", str(state_file)]
    with (tmp_path / "stdout.jsonl").open("w", encoding="utf-8") as out:
        return main(["--config", str(config_file), *extra], out=out)


def test_problems_stop_the_tap_with_a_reason(
    books: Books, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tap-finfactory")
    url = books.url
    assert _tap(tmp_path, {}) == 1
    assert "database_url is required" in caplog.text
    assert _tap(tmp_path, {"database_url": url, "batch_size": 0}) == 1
    assert _tap(tmp_path, {"database_url": url, "streams": ["no.such_event"]}) == 1
    assert "undeclared event types" in caplog.text
    assert _tap(tmp_path, {"database_url": url}, state={"bookmarks": {"x": {"value": 1}}}) == 1
    assert "bookmark" in caplog.text

    # An outbox event this installation does not know: never skipped silently.
    with books.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO ff_outbox (id, event_type, schema_version, tenant_id, source,"
            " aggregate_type, aggregate_id, aggregate_sequence, payload, recorded_at, trace_id,"
            " correlation_id, causation_id, partition) VALUES ('00000000-0000-4000-8000-"
            "0000000fffff', 'mystery.happened', 1, 'tenant-a', 'elsewhere', 'thing', 'x', 1,"
            " '{}', '2026-01-01 00:00:00.000000', '" + "a" * 32 + "', 'c', NULL, 0)"
        )
    assert _tap(tmp_path, {"database_url": url}) == 1
    assert "mystery.happened v1 is not declared" in caplog.text
    # Choosing streams says which events are wanted: the unknown one is not among them.
    assert _tap(tmp_path, {"database_url": url, "streams": ["journal.posted"]}) == 0
