"""`python -m tools.explain_queries`: every read query of gateway.queries gets its plan in the document."""

import re

import pytest

from app.config import get_settings
from tools import explain_queries

pytestmark = pytest.mark.integration


def test_every_read_query_is_explained_on_a_seeded_database(postgres, tmp_path):
    output = tmp_path / "plans.md"
    explain_queries.generate(get_settings().database_url, trips=40, output=output)

    document = output.read_text()
    names = [function.__name__ for function in explain_queries.read_queries()]
    assert {"booking_by_id", "bookings_of_rider", "upcoming_of_rider", "history"} <= set(names)
    sections = re.split(r"^## ", document, flags=re.MULTILINE)[1:]
    assert [section.split("`")[1] for section in sections] == names
    for section in sections:
        assert "Execution Time" in section, f"no plan:\n{section}"


def test_a_parameter_without_a_sample_value_is_named():
    async def by_colour(conn, colour: str, limit: int = 3) -> None: ...

    with pytest.raises(SystemExit, match="'colour' of queries.by_colour"):
        explain_queries.arguments_for(by_colour, {"limit": 1})
