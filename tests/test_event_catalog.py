"""The generated event catalog: committed and current, compatible, true to real events, valid.

- docs/events.md, docs/events/schemas/*.json and docs/events/asyncapi.json equal what the code
  generates (``python -m finfactory.events.catalog --check``);
- the compatibility gate: an event version that is already committed may only change in
  backward-compatible ways (a new version is the way to break);
- every event a real ledger scenario emits validates against its committed schema;
- the AsyncAPI document passes the official AsyncAPI parser (installed with npm, cached in
  .cache/asyncapi).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from moneyed import Money
from pydantic import Field, create_model

from finfactory.events import REGISTRY, EventPayload, EventRegistry, OutboxReader, declare_event
from finfactory.events.catalog import (
    ASYNCAPI_FILE,
    ENVELOPE_KEY,
    MARKDOWN_FILE,
    REGENERATE_COMMAND,
    SCHEMA_DIR,
    asyncapi_document,
    check_compatibility,
    compatibility_problems,
    event_prefixes,
    example_envelope,
    generate_files,
    json_schemas,
    load_all_primitives,
    load_committed_schemas,
    main,
    payload_fields,
    render_markdown,
    schema_file_name,
    schema_key_of_file,
    stale_files,
    write_files,
)
from finfactory.kernel.context import RequestContext
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMITTED_SCHEMAS = DOCS / SCHEMA_DIR
PARSER_VERSION = "3.6.3"  # @asyncapi/parser, the official AsyncAPI parser and validator
PARSER_CACHE = ROOT / ".cache" / "asyncapi"

load_all_primitives()


def php(amount: str) -> Money:
    return Money(amount, "PHP")


def committed_schema(name: str, version: int) -> dict[str, Any]:
    path = COMMITTED_SCHEMAS / schema_file_name(f"{name}/{version}")
    assert path.is_file(), f"{path} is not committed: run `{REGENERATE_COMMAND}`"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


# -- the committed catalog is current -------------------------------------------------------


def test_committed_catalog_equals_the_generated_one() -> None:
    problems = stale_files(DOCS, generate_files(REGISTRY))
    assert not problems, (
        "the committed event catalog is out of date:\n  "
        + "\n  ".join(problems)
        + f"\nrun `{REGENERATE_COMMAND}` (from the repository root) and commit docs/events*"
    )


def test_every_primitive_package_is_loaded() -> None:
    assert "ledger" in load_all_primitives()
    assert {t.primitive for t in REGISTRY} >= {"ledger"}


def test_cli_writes_then_check_detects_stale_and_stray_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", "--out", str(tmp_path)]) == 1  # nothing written yet
    assert main(["--out", str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert f"{SCHEMA_DIR}/envelope.json" in written
    assert ASYNCAPI_FILE in written
    assert len([p for p in written if p.startswith(SCHEMA_DIR)]) == len(REGISTRY) + 1
    capsys.readouterr()
    assert main(["--check", "--out", str(tmp_path)]) == 0

    markdown = tmp_path / MARKDOWN_FILE
    original = markdown.read_text(encoding="utf-8")
    markdown.write_text(original + "\nhand edit\n", encoding="utf-8")
    assert main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "events.md" in err
    assert REGENERATE_COMMAND in err
    markdown.write_text(original, encoding="utf-8")

    stray = tmp_path / SCHEMA_DIR / "gone.event.v1.json"
    stray.write_text("{}", encoding="utf-8")
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "gone.event.v1.json" in capsys.readouterr().err
    stray.unlink()
    assert main(["--check", "--out", str(tmp_path)]) == 0


# -- the compatibility gate ------------------------------------------------------------------


def _git_baseline(ref: str) -> dict[str, dict[str, Any]] | None:
    """Committed schemas as of a git ref (None when git or the ref is not available)."""
    git = shutil.which("git")
    if git is None:
        return None
    listing = subprocess.run(
        [git, "-C", str(ROOT), "ls-tree", "--name-only", f"{ref}:docs/{SCHEMA_DIR}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        return None
    out: dict[str, dict[str, Any]] = {}
    for file_name in listing.stdout.split():
        key = schema_key_of_file(file_name)
        if key is None:
            continue
        shown = subprocess.run(
            [git, "-C", str(ROOT), "show", f"{ref}:docs/{SCHEMA_DIR}/{file_name}"],
            capture_output=True,
            text=True,
            check=True,
        )
        out[key] = json.loads(shown.stdout)
    return out


def test_code_stays_compatible_with_every_committed_schema() -> None:
    """The CI gate: changing a published event version incompatibly fails; add a version.

    The baselines are the schema files in the working tree and, when git is there, the ones
    at ``$FINFACTORY_SCHEMA_BASE_REF`` (for example ``origin/main`` on CI; default ``HEAD``),
    so regenerating the files does not get an incompatible change past the gate.
    """
    generated = json_schemas(REGISTRY)
    baselines = {"docs/ (working tree)": load_committed_schemas(COMMITTED_SCHEMAS)}
    assert baselines["docs/ (working tree)"], f"no committed schemas: run `{REGENERATE_COMMAND}`"
    explicit_ref = os.environ.get("FINFACTORY_SCHEMA_BASE_REF")
    ref = explicit_ref or "HEAD"
    at_ref = _git_baseline(ref)
    if at_ref is None and explicit_ref:
        pytest.fail(f"FINFACTORY_SCHEMA_BASE_REF={explicit_ref}: no schemas at that git ref")
    if at_ref is not None:
        baselines[f"git {ref}"] = at_ref
    report = []
    for label, committed in baselines.items():
        for key, problems in compatibility_problems(committed, generated).items():
            report += [f"{label}: {schema_file_name(key)}: {problem}" for problem in problems]
    assert not report, (
        "event schemas changed incompatibly within a published version:\n  "
        + "\n  ".join(report)
        + "\ndeclare a new version of the event (declare_event(..., version=N+1)) instead"
    )


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    return schema


STR: dict[str, Any] = {"type": "string"}
OLD = _obj({"id": STR, "amount": {"type": "integer"}, "note": STR}, ["id", "amount"])


def test_identical_schemas_are_compatible() -> None:
    assert check_compatibility(OLD, OLD) == []


def test_new_optional_field_is_compatible() -> None:
    new = _obj({**OLD["properties"], "extra": STR}, ["id", "amount"])
    assert check_compatibility(OLD, new) == []


def test_removed_field_is_a_problem() -> None:
    new = _obj({"id": STR, "note": STR}, ["id"])
    assert check_compatibility(OLD, new) == ["amount: field removed"]
    optional_gone = _obj({"id": STR, "amount": {"type": "integer"}})
    assert check_compatibility(OLD, optional_gone) == ["note: field removed"]


@pytest.mark.parametrize(
    "new_type",
    [
        {"type": "string"},
        {"type": "number"},
        {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        {"type": ["integer", "null"]},
    ],
    ids=["string", "number", "nullable-anyOf", "nullable-list"],
)
def test_changed_type_is_a_problem(new_type: dict[str, Any]) -> None:
    new = _obj({"id": STR, "amount": new_type, "note": STR}, ["id", "amount"])
    problems = check_compatibility(OLD, new)
    assert len(problems) == 1
    assert problems[0].startswith("amount: type changed from integer")


def test_changed_string_format_is_a_type_change() -> None:
    old = _obj({"at": {"type": "string", "format": "date-time"}})
    new = _obj({"at": {"type": "string", "format": "date"}})
    assert check_compatibility(old, new) == [
        "at: type changed from string(date-time) to string(date)"
    ]


def test_new_required_field_is_a_problem() -> None:
    new = _obj({**OLD["properties"], "currency": STR}, ["id", "amount", "currency"])
    assert check_compatibility(OLD, new) == ["currency: new required field"]


def test_optional_field_becoming_required_is_a_problem() -> None:
    new = _obj(OLD["properties"], ["id", "amount", "note"])
    assert check_compatibility(OLD, new) == ["note: optional field became required"]


def test_required_field_becoming_optional_is_a_problem() -> None:
    new = _obj(OLD["properties"], ["id"])
    assert check_compatibility(OLD, new) == ["amount: required field became optional"]


def test_enum_values_may_be_added_but_not_removed() -> None:
    old = _obj({"status": {"type": "string", "enum": ["active", "frozen"]}})
    added = _obj({"status": {"type": "string", "enum": ["active", "frozen", "closed"]}})
    removed = _obj({"status": {"type": "string", "enum": ["active"]}})
    assert check_compatibility(old, added) == []
    assert check_compatibility(old, removed) == ["status: enum values removed: ['frozen']"]
    literal = _obj({"kind": {"const": "a", "type": "string"}})
    assert (
        check_compatibility(literal, _obj({"kind": {"enum": ["a", "b"], "type": "string"}})) == []
    )


def _with_legs(money: dict[str, Any], name: str = "Money") -> dict[str, Any]:
    return {
        "$defs": {
            "Leg": _obj({"account_id": STR, "amount": {"$ref": f"#/$defs/{name}"}}),
            name: money,
        },
        **_obj({"legs": {"type": "array", "items": {"$ref": "#/$defs/Leg"}}}),
    }


MONEY = _obj({"amount": STR, "currency": STR})


def test_nested_definitions_are_checked_recursively() -> None:
    old = _with_legs(MONEY)
    assert check_compatibility(old, _with_legs(MONEY, name="MoneyJson")) == []  # renamed def
    assert check_compatibility(old, _with_legs(_obj({"amount": STR}))) == [
        "legs[].amount.currency: field removed"
    ]
    wider = _obj({"amount": STR, "currency": STR, "scale": {"type": "integer"}})
    assert check_compatibility(old, _with_legs(wider)) == [
        "legs[].amount.scale: new required field"
    ]
    assert check_compatibility(old, _with_legs(_obj({"amount": STR, "currency": STR}, []))) == [
        "legs[].amount.amount: required field became optional",
        "legs[].amount.currency: required field became optional",
    ]


def test_recursive_models_do_not_loop() -> None:
    tree = {
        "$defs": {
            "Node": _obj(
                {"name": STR, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}
            )
        },
        "$ref": "#/$defs/Node",
    }
    assert check_compatibility(tree, tree) == []


class _Before(EventPayload):
    journal_id: str
    amount: str
    note: str | None = None


class _AfterCompatible(EventPayload):
    journal_id: str
    amount: str
    note: str | None = None
    channel: str = "web"


class _AfterBreaking(EventPayload):
    journal_id: str
    amount: int


def _schemas_for(*payloads: tuple[type[EventPayload], int]) -> dict[str, dict[str, Any]]:
    registry = EventRegistry()
    for model, version in payloads:
        declare_event(
            "sample.posted",
            primitive="sample",
            aggregate_type="sample",
            description="A sample was posted",
            version=version,
            registry=registry,
        )(model)
    return json_schemas(registry)


def test_gate_on_schemas_generated_from_pydantic_models() -> None:
    before = _schemas_for((_Before, 1))
    assert compatibility_problems(before, _schemas_for((_AfterCompatible, 1))) == {}
    assert compatibility_problems(before, _schemas_for((_AfterBreaking, 1))) == {
        "sample.posted/1": ["amount: type changed from string to integer", "note: field removed"]
    }
    # Breaking through a new version keeps the old one: compatible.
    assert compatibility_problems(before, _schemas_for((_Before, 1), (_AfterBreaking, 2))) == {}
    # Dropping a published version is refused too.
    assert list(compatibility_problems(before, _schemas_for((_AfterBreaking, 2)))) == [
        "sample.posted/1"
    ]


def test_writing_refuses_an_incompatible_change_to_a_committed_schema(tmp_path: Path) -> None:
    def files_for(*payloads: tuple[type[EventPayload], int]) -> dict[str, str]:
        registry = EventRegistry()
        for model, version in payloads:
            declare_event(
                "sample.posted",
                primitive="sample",
                aggregate_type="sample",
                description="A sample was posted",
                version=version,
                registry=registry,
            )(model)
        return generate_files(registry)

    assert write_files(tmp_path, files_for((_Before, 1))) == {}
    committed = (tmp_path / SCHEMA_DIR / "sample.posted.v1.json").read_text(encoding="utf-8")
    refused = write_files(tmp_path, files_for((_AfterBreaking, 1)))
    assert list(refused) == ["sample.posted/1"]
    assert (tmp_path / SCHEMA_DIR / "sample.posted.v1.json").read_text(
        encoding="utf-8"
    ) == committed
    assert write_files(tmp_path, files_for((_Before, 1), (_AfterBreaking, 2))) == {}
    assert (tmp_path / SCHEMA_DIR / "sample.posted.v2.json").is_file()
    assert write_files(tmp_path, files_for((_AfterBreaking, 1)), allow_breaking=True) == {}
    assert not (tmp_path / SCHEMA_DIR / "sample.posted.v2.json").exists()  # stale: removed


# -- the schemas describe real events --------------------------------------------------------


def test_schemas_are_valid_draft_2020_12_with_id_title_and_description() -> None:
    schemas = json_schemas(REGISTRY)
    assert set(schemas) == {f"{t.name}/{t.version}" for t in REGISTRY} | {ENVELOPE_KEY}
    ids = set()
    for key, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"], key
        assert schema["description"], key
        ids.add(schema["$id"])
    assert len(ids) == len(schemas)
    journal = schemas["journal.posted/1"]
    assert journal["title"] == "journal.posted"
    assert journal["description"] == REGISTRY.get("journal.posted", 1).description


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in _validator(schema).iter_errors(instance)
    ]


def run_ledger_scenario(ledger: LedgerService, ctx: RequestContext, clock: ManualClock) -> None:
    """A short day of ledger work that emits every event type the ledger declares."""
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    alice = ledger.open_account(
        ctx,
        c.OpenAccount(
            code="wallet.alice",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    )
    shop = ledger.open_account(ctx, c.OpenAccount(code="shop", currency="PHP", type="liability"))

    def cash_in(reference: str, amount: str) -> c.JournalView:
        return ledger.post_journal(
            ctx,
            c.PostJournal(
                reference=reference,
                description=f"cash in {reference}",
                legs=[
                    c.Leg(account_id=cash.id, direction="debit", amount=php(amount)),
                    c.Leg(account_id=alice.id, direction="credit", amount=php(amount)),
                ],
            ),
        )

    cash_in("cash-in-1", "100.00")
    mistaken = cash_in("cash-in-2", "7.50")
    ledger.reverse_journal(
        ctx, c.ReverseJournal(journal_id=mistaken.id, reference="rev-2", reason="duplicate")
    )
    order = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="order-1",
            debit_account_id=alice.id,
            credit_account_id=shop.id,
            amount=php("30.00"),
        ),
    )
    ledger.capture_hold(
        ctx, c.CaptureHold(hold_id=order.id, reference="capture-1", amount=php("20.00"))
    )
    cancelled = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="order-2",
            debit_account_id=alice.id,
            credit_account_id=shop.id,
            amount=php("5.00"),
        ),
    )
    ledger.void_hold(ctx, c.VoidHold(hold_id=cancelled.id, reason="customer cancelled"))
    ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="order-3",
            debit_account_id=alice.id,
            credit_account_id=shop.id,
            amount=php("1.00"),
            expires_at=clock.now() + timedelta(minutes=15),
        ),
    )
    clock.advance(timedelta(minutes=16))
    assert len(ledger.expire_holds(ctx).hold_ids) == 1
    ledger.change_account_status(
        ctx, c.ChangeAccountStatus(account_id=shop.id, status="frozen", reason="review")
    )


def test_every_emitted_event_validates_against_its_committed_schema(
    ledger: LedgerService, storage: Storage, ctx: RequestContext, clock: ManualClock
) -> None:
    run_ledger_scenario(ledger, ctx, clock)
    envelopes = list(OutboxReader(storage).drain())
    envelope_schema = json.loads(
        (COMMITTED_SCHEMAS / f"{ENVELOPE_KEY}.json").read_text(encoding="utf-8")
    )
    failures = []
    for envelope in envelopes:
        data = envelope.to_json_dict()
        schema = committed_schema(envelope.event_type, envelope.schema_version)
        failures += [f"{envelope.event_type} envelope {e}" for e in _errors(envelope_schema, data)]
        failures += [f"{envelope.event_type} payload {e}" for e in _errors(schema, data["payload"])]
        # And through JSON text, as a consumer receives it.
        assert json.loads(json.dumps(data)) == data
    assert not failures, "\n".join(failures)
    emitted = {e.event_type for e in envelopes}
    declared = {t.name for t in REGISTRY if t.primitive == "ledger"}
    assert emitted == declared, f"the scenario should emit every ledger event: {declared - emitted}"


def test_schemas_reject_what_the_events_never_carry() -> None:
    schema = committed_schema("hold.created", 1)
    good = {
        "hold_id": "h1",
        "reference": "order-1",
        "debit_account_id": "a1",
        "credit_account_id": "a2",
        "amount": {"amount": "1.00", "currency": "PHP"},
        "expires_at": None,
    }
    assert _errors(schema, good) == []
    assert _errors(schema, {**good, "amount": 1.0})
    assert _errors(schema, {**good, "unknown": 1})
    assert _errors(schema, {k: v for k, v in good.items() if k != "reference"})


# -- the Markdown reference ------------------------------------------------------------------


def test_markdown_lists_every_event_with_its_description_and_fields() -> None:
    markdown = render_markdown(REGISTRY)
    for event_type in REGISTRY:
        assert f"`{event_type.name}`" in markdown
        assert event_type.description in markdown
    for section in (
        "# Domain Events",
        "## Event Structure",
        "## Ledger Events",
        "| Event | Description | Payload Fields |",
        "## Event Types Reference",
        "## Consuming Events",
        "ff_outbox",
        "ORDER BY position",
        "Meltano",
        "finfactory.<tenant>.<event_type>",
    ):
        assert section in markdown, section
    for field in ("recorded_at", "trace_id", "tenant_id", "aggregate_sequence", "position"):
        assert f"`{field}`" in markdown
    assert "```python" not in markdown  # docs/*.md python blocks are executed by test_docs
    assert render_markdown(REGISTRY) == markdown  # deterministic


def test_payload_fields_flatten_nested_models() -> None:
    rows = dict(payload_fields(json_schemas(REGISTRY)["journal.posted/1"]))
    assert rows["legs[].amount"] == "money"
    assert rows["balances[].available"] == "money"
    assert rows["reverses_journal_id"] == "string or null"
    assert rows["effective_date"] == "date"
    assert rows["posted_at"] == "date-time"
    assert "legs" not in rows


def test_the_envelope_example_is_a_valid_event() -> None:
    example = example_envelope(REGISTRY)
    schemas = json_schemas(REGISTRY)
    assert _errors(schemas[ENVELOPE_KEY], example) == []
    key = f"{example['event_type']}/{example['schema_version']}"
    assert _errors(schemas[key], example["payload"]) == []


class _Node(EventPayload):
    name: str
    children: list[_Node]


class _Tree(EventPayload):
    root: _Node
    parent: _Node | None = None
    note: str = Field("", description="free text | with a pipe")
    status: Literal["open", "closed"]


def test_optional_recursive_and_enum_fields_render_and_exemplify() -> None:
    registry = EventRegistry()
    declare_event(
        "tree.grown",
        primitive="garden",
        aggregate_type="tree",
        description="A tree grew",
        registry=registry,
    )(_Tree)
    rows = dict(payload_fields(json_schemas(registry)["tree.grown/1"]))
    assert rows["root.name"] == "string"
    assert rows["root.children[]"] == "_Node (recursive)"
    assert rows["parent"] == "object or null, optional"
    assert rows["note"] == "string, optional — free text | with a pipe"
    assert rows["status"] == 'one of `"open"`, `"closed"`'
    markdown = render_markdown(registry)
    assert "free text \\| with a pipe" in markdown  # escaped inside the table cell
    example = example_envelope(registry)
    assert example["payload"] == {"root": {"name": "name", "children": []}, "status": "open"}
    assert _errors(json_schemas(registry)["tree.grown/1"], example["payload"]) == []


class _V1(EventPayload):
    id: str


class _V2(EventPayload):
    id: str
    kind: str


class _Single(EventPayload):
    id: str


def _mixed_registry() -> EventRegistry:
    registry = EventRegistry()
    entries: list[tuple[str, str, type[EventPayload], int]] = [
        ("risk.flagged", "kyc", _Single, 1),
        ("kyc.started", "kyc", _Single, 1),
        ("kyc.verified", "kyc", _V1, 1),
        ("kyc.verified", "kyc", _V2, 2),
        ("risk.approved", "fraud", _Single, 1),
        ("risk.declined", "fraud", _Single, 1),
        ("card.payment.authorized", "card_acquiring", _Single, 1),
        ("card.payment.captured", "card_acquiring", _Single, 1),
        ("card.issued", "card_issuing", _Single, 1),
    ]
    for name, primitive, model, version in entries:
        declare_event(
            name,
            primitive=primitive,
            aggregate_type="thing",
            description=f"{name} happened",
            version=version,
            registry=registry,
        )(model)
    return registry


def test_version_column_only_where_an_event_has_several_versions() -> None:
    markdown = render_markdown(_mixed_registry())
    kyc = markdown.split("## KYC Events")[1].split("\n## ")[0]
    fraud = markdown.split("## Fraud Events")[1].split("\n## ")[0]
    assert "| Event | Version | Description | Payload Fields |" in kyc
    assert "| Event | Description | Payload Fields |" in fraud
    assert "kyc.verified.v1.json" in kyc
    assert "kyc.verified.v2.json" in kyc


def test_prefixes_never_claim_another_primitives_events() -> None:
    assert event_prefixes(_mixed_registry()) == {
        "card_acquiring": ["card.payment.*"],
        "card_issuing": ["card.issued"],
        "fraud": ["risk.approved", "risk.declined"],
        "kyc": ["kyc.*", "risk.flagged"],
    }
    assert event_prefixes(REGISTRY)["ledger"] == [
        "balance.*",
        "hold.*",
        "journal.*",
        "ledger.account.*",
        "transaction.*",
    ]


# -- AsyncAPI --------------------------------------------------------------------------------

VALIDATE_JS = """\
'use strict';
// Parse AsyncAPI documents with the official parser; exit 1 on any error diagnostic.
const fs = require('fs');
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');
const names = ['error', 'warning', 'information', 'hint'];

(async () => {
  const parser = new Parser();
  let failed = false;
  for (const path of process.argv.slice(2)) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(path, 'utf8'), {
      source: path,
    });
    for (const d of diagnostics) {
      console.log(`${path}: ${names[d.severity] || d.severity} ${d.code} ` +
        `${d.path.join('.')}: ${d.message}`);
    }
    const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
    if (document === undefined || errors.length > 0) {
      failed = true;
      console.log(`${path}: INVALID (${errors.length} errors)`);
    } else {
      console.log(`${path}: VALID AsyncAPI ${document.version()}, ` +
        `${document.channels().length} channels, ${document.messages().length} messages, ` +
        `${document.operations().length} operations`);
    }
  }
  process.exit(failed ? 1 : 0);
})().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(2);
});
"""


@pytest.fixture(scope="session")
def asyncapi_validator() -> list[str]:
    """The command that validates AsyncAPI files: node and the official parser (cached)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    target = PARSER_CACHE / f"parser-{PARSER_VERSION}"
    installed = target / "node_modules" / "@asyncapi" / "parser" / "package.json"
    if not installed.is_file():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install the parser"
        PARSER_CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"parser-{PARSER_VERSION}.", dir=PARSER_CACHE))
        try:
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(staging),
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    f"@asyncapi/parser@{PARSER_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"npm install failed:\n{result.stdout}{result.stderr}"
            try:
                staging.rename(target)  # atomic: a half-finished install is never used
            except OSError:
                if not installed.is_file():  # not another process winning the race
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    version = json.loads(installed.read_text(encoding="utf-8"))["version"]
    assert version == PARSER_VERSION
    script = target / "validate.js"
    if not script.is_file() or script.read_text(encoding="utf-8") != VALIDATE_JS:
        script.write_text(VALIDATE_JS, encoding="utf-8")
    return [node, str(script)]


def _validate(command: list[str], *documents: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *map(str, documents)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _money_as_strings() -> type[EventPayload]:
    class MoneyJson(EventPayload):
        amount: str
        currency: str

    return MoneyJson


def _money_as_cents() -> type[EventPayload]:
    class MoneyJson(EventPayload):
        cents: int

    return MoneyJson


def _collision_registry() -> EventRegistry:
    """Two payloads whose different nested models share a name (``MoneyJson``)."""
    registry = EventRegistry()
    for name, money in [("first.done", _money_as_strings()), ("second.done", _money_as_cents())]:
        model = cast(
            "type[EventPayload]", create_model("Done", __base__=EventPayload, total=(money, ...))
        )
        declare_event(
            name, primitive="p", aggregate_type="a", description=f"{name}", registry=registry
        )(model)
    return registry


def test_asyncapi_document_passes_the_official_validator(
    asyncapi_validator: list[str], tmp_path: Path
) -> None:
    committed = DOCS / ASYNCAPI_FILE
    assert committed.is_file(), f"run `{REGENERATE_COMMAND}`"
    assert json.loads(committed.read_text(encoding="utf-8")) == asyncapi_document(REGISTRY)
    colliding = tmp_path / "colliding.json"
    colliding.write_text(json.dumps(asyncapi_document(_collision_registry(), "acme")))
    result = _validate(asyncapi_validator, committed, colliding)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{committed}: VALID AsyncAPI 3.0.0, {len({t.name for t in REGISTRY})} channels" in (
        result.stdout
    )

    # The validator is not vacuous: a broken document is refused.
    broken = asyncapi_document(REGISTRY)
    first_operation = next(iter(broken["operations"].values()))
    first_operation["action"] = "publish"
    del broken["components"]["schemas"]["MoneyJson"]
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    refused = _validate(asyncapi_validator, bad)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "INVALID" in refused.stdout


def test_asyncapi_channels_messages_and_operations() -> None:
    doc = asyncapi_document(REGISTRY, subject_prefix="ff")
    assert doc["asyncapi"] == "3.0.0"
    assert doc["defaultContentType"] == "application/json"
    names = sorted({t.name for t in REGISTRY})
    assert sorted(doc["channels"]) == names
    for name in names:
        channel = doc["channels"][name]
        assert channel["address"] == f"ff.{{tenant}}.{name}"
        assert set(channel["parameters"]) == {"tenant"}
        operation = doc["operations"][f"send.{name}"]
        assert operation["action"] == "send"
        assert operation["channel"] == {"$ref": f"#/channels/{name}"}
    message = doc["components"]["messages"]["journal.posted.v1"]
    envelope_ref, narrowed = message["payload"]["allOf"]
    assert envelope_ref == {"$ref": "#/components/schemas/Envelope"}
    assert narrowed["properties"]["event_type"] == {"const": "journal.posted"}
    assert narrowed["properties"]["payload"] == {"$ref": "#/components/schemas/journal.posted.v1"}
    assert "$defs" not in json.dumps(doc)  # hoisted into components/schemas


def test_asyncapi_keeps_same_named_models_apart() -> None:
    schemas = asyncapi_document(_collision_registry())["components"]["schemas"]
    money = sorted(k for k in schemas if k.startswith("MoneyJson"))
    assert len(money) == 2
    assert all(len(k) == len("MoneyJson.") + 8 for k in money)
    refs = {
        schemas[key]["properties"]["total"]["$ref"].rsplit("/", 1)[1]
        for key in ("first.done.v1", "second.done.v1")
    }
    assert refs == set(money)
    cents = schemas["second.done.v1"]["properties"]["total"]["$ref"].rsplit("/", 1)[1]
    assert set(schemas[cents]["properties"]) == {"cents"}
