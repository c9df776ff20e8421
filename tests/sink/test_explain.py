"""`python -m sinks.explain`: every read query of sinks.queries gets its plan in the document."""

import re

import pytest

from app.config import get_settings
from sinks import explain

pytestmark = pytest.mark.integration


def test_every_read_query_is_explained_on_a_seeded_database(postgres, tmp_path):
    output = tmp_path / "plans.md"
    explain.generate(get_settings().database_url, trips=40, output=output)

    document = output.read_text()
    names = [function.__name__ for function in explain.read_queries()]
    assert {"booking_by_id", "bookings_of_rider", "upcoming_of_rider", "history"} <= set(names)
    sections = re.split(r"^## ", document, flags=re.MULTILINE)[1:]
    assert [section.split("`")[1] for section in sections] == names
    for section in sections:
        assert "Execution Time" in section, f"no plan:\n{section}"


def test_a_parameter_without_a_sample_value_is_named():
    async def by_colour(conn, colour: str, limit: int = 3) -> None: ...

    with pytest.raises(SystemExit, match="'colour' of queries.by_colour"):
        explain.arguments_for(by_colour, {"limit": 1})
