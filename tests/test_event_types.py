"""The event-type catalogue agrees with the projection code and with Stripe's list."""

from __future__ import annotations

import argparse
import json

import pytest

from cli import event_types_cmd
from ledger.settings import Settings
from projections import catalogue
from projections.registry import PROJECTIONS
from tests.conftest import STRIPE_FIXTURES

STRIPE_TYPES = STRIPE_FIXTURES / "event_types.json"


def test_the_projects_copy_of_the_type_list_is_stripes_list() -> None:
    ours = [item["type"] for item in catalogue.known_types()]
    assert len(ours) == len(set(ours)) == 265
    assert ours == [item["type"] for item in json.loads(STRIPE_TYPES.read_text())]


def test_every_type_a_projection_handles_is_a_stripe_event_type() -> None:
    known = {item["type"] for item in catalogue.known_types()}
    for name, projection in PROJECTIONS.items():
        unknown = set(projection.handlers) - known
        assert not unknown, (name, unknown)
        assert all(effect.strip() for effect in projection.handlers.values()), name


def test_the_catalogue_claims_exactly_what_the_handler_tables_say() -> None:
    rows = catalogue.catalogue()
    assert len(rows) == 265
    claimed = {(row.type, name, effect) for row in rows for name, effect in row.effects}
    handled = {
        (event_type, name, effect)
        for name, projection in PROJECTIONS.items()
        for event_type, effect in projection.handlers.items()
    }
    assert claimed == handled
    stored_only = {row.type for row in rows if not row.effects}
    assert "customer.created" in stored_only and "charge.succeeded" not in stored_only


def test_types_are_grouped_by_resource() -> None:
    groups = catalogue.grouped()
    assert [row.type for row in groups["charge.dispute"]] == [
        "charge.dispute.closed",
        "charge.dispute.created",
        "charge.dispute.funds_reinstated",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
    ]
    assert sum(len(rows) for rows in groups.values()) == 265


@pytest.mark.parametrize("output_format", ["table", "json"])
def test_event_types_command(output_format: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    event_types_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["event-types", "--format", output_format])
    assert args.handler(args, Settings.from_env()) == 0
    out = capsys.readouterr().out
    if output_format == "json":
        data = json.loads(out)
        (paid,) = [row for row in data["invoice"] if row["type"] == "invoice.paid"]
        assert [effect["projection"] for effect in paid["projections"]] == ["invoices"]
        (created,) = [row for row in data["customer"] if row["type"] == "customer.created"]
        assert created["projections"] == []
    else:
        assert "charge.dispute.funds_withdrawn" in out and "stored only" in out
        assert "265 event types" in out
