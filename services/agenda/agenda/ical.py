"""iCalendar (RFC 5545) export of a calendar, with the `icalendar` package."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from icalendar import Calendar, Event


def calendar_ics(appointments: list[dict[str, Any]], *, name: str, stamp: datetime) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//Coordo//agenda//FR")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    for appointment in appointments:
        event = Event()
        event.add("uid", f"{appointment['id']}@coordo")
        event.add("dtstamp", stamp)
        event.add("dtstart", datetime.fromisoformat(appointment["start"]))
        event.add("dtend", datetime.fromisoformat(appointment["end"]))
        # A calendar file ends up in other tools: the type only, never the title or place,
        # which users write freely and may name a patient or a condition.
        event.add("summary", appointment["type_label"])
        event.add("sequence", appointment["version"] - 1)
        event.add("last-modified", datetime.fromisoformat(appointment["updated_at"]))
        calendar.add_component(event)
    return calendar.to_ical()
