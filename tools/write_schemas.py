"""Writes the published JSON Schema files (schemas/) from the wire models: every command
(app.wire.commands), the reply and every event, bookings' and waiting-list entries'
(app.wire.contract).

    python -m tools.write_schemas          # (re)write schemas/
    python -m tools.write_schemas --check  # exit 1 if a committed file is stale (`make schemas` fixes it)
"""

import json
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter

from app.config import ROOT
from app.wire import contract
from app.wire.topics import CONTRACT
from app.wire.commands import AnyCommandIn, TickIn, TripRecordIn

SCHEMAS = ROOT / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def documents() -> dict[str, dict[str, Any]]:
    """Path under schemas/ -> schema document."""
    found: dict[str, dict[str, Any]] = {}
    for model in get_args(get_args(AnyCommandIn)[0]):
        kind = get_args(model.model_fields["type"].annotation)[0]
        found[f"commands/{kind}.json"] = schema_of(model, f"{kind} command on {CONTRACT.commands}")
    found["commands/tick.json"] = schema_of(TickIn, f"clock tick on {CONTRACT.commands} (key `tick`)")
    found["trips/trip-record.json"] = schema_of(TripRecordIn, "record of trips.catalog (compacted, key = trip)")
    found["replies/reply.json"] = schema_of(contract.Reply, "reply on booking.replies")
    for kind in CONTRACT.lifecycle:
        model = contract.RefundRequiredEvent if kind == CONTRACT.refund_required else contract.booking_event(kind)
        found[f"events/{kind}.json"] = schema_of(model, f"event on {kind}")
    for kind in CONTRACT.waitlist:
        found[f"events/{kind}.json"] = schema_of(contract.waitlist_event(kind), f"event on {kind}")
    found["events/trip.updated.json"] = schema_of(contract.TripUpdatedEvent, "event on trip.updated")
    return found


def schema_of(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = TypeAdapter(model).json_schema(by_alias=True, mode="validation")
    return {"$schema": DIALECT, **schema, "title": title}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale(root: Path = SCHEMAS) -> list[str]:
    """Files missing, different or extra compared with what the models say."""
    wanted = {path: render(doc) for path, doc in documents().items()}
    present = {str(p.relative_to(root)) for p in root.rglob("*.json")} if root.exists() else set()
    differing = [p for p, text in wanted.items() if not (root / p).exists() or (root / p).read_text() != text]
    return sorted(differing + [p for p in present if p not in wanted])


def write(root: Path = SCHEMAS) -> None:
    for path in stale(root):
        (root / path).unlink(missing_ok=True)
    for path, document in documents().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(render(document))


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        outdated = stale()
        if outdated:
            sys.exit("stale JSON Schema files (run `make schemas`): " + ", ".join(outdated))
    else:
        write()
