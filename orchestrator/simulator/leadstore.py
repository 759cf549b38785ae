"""What imports write: leads, list and program memberships, custom-object records.

Leads are upserted on the lookup field (docs/reference/marketo-api.md §2.1, §4.1, §4.2, §8.5).
"""

from __future__ import annotations

from typing import Any


class LeadStore:
    """An instance's leads, keyed by an internal integer id, with lookup indexes.

    Indexes are built lazily for each field first used as ``lookupField`` and then kept up to
    date on every write, so an upsert costs O(1).
    """

    def __init__(self) -> None:
        self.leads: dict[int, dict[str, str]] = {}
        self.partitions: dict[int, str] = {}
        self.lists: dict[int, set[int]] = {}
        self.program_members: dict[int, dict[int, dict[str, str]]] = {}
        self.objects: dict[str, dict[tuple[str, ...], dict[str, str]]] = {}
        self._indexes: dict[str, dict[str, int]] = {}
        self._next_id = 1

    def _index(self, field: str) -> dict[str, int]:
        index = self._indexes.get(field)
        if index is None:
            index = {}
            for lead_id, lead in self.leads.items():
                value = lead.get(field)
                if value:
                    index.setdefault(value, lead_id)
            self._indexes[field] = index
        return index

    def upsert(
        self, lookup_field: str, lookup_value: str, values: dict[str, str], partition: str
    ) -> int | None:
        """Insert or update the lead whose ``lookup_field`` equals ``lookup_value``.

        ``lookup_field == "id"`` means update only.

        Returns:
            The lead id, or None when ``id`` names no lead.
        """
        if lookup_field == "id":
            try:
                lead_id = int(lookup_value)
            except ValueError:
                return None
            if lead_id not in self.leads:
                return None
        else:
            found = self._index(lookup_field).get(lookup_value)
            if found is None:
                lead_id = self._next_id
                self._next_id += 1
                self.leads[lead_id] = {}
                self.partitions[lead_id] = partition
            else:
                lead_id = found
        lead = self.leads[lead_id]
        for field, index in self._indexes.items():
            new = values.get(field)
            if new is None:
                continue
            old = lead.get(field)
            if old is not None and index.get(old) == lead_id:
                del index[old]
            index[new] = lead_id
        lead.update(values)
        return lead_id

    def add_to_list(self, list_id: int, lead_id: int) -> None:
        """Add a lead to a static list."""
        self.lists.setdefault(list_id, set()).add(lead_id)

    def set_member(
        self, program_id: int, lead_id: int, status: str, values: dict[str, str]
    ) -> None:
        """Make a lead a member of a program with a status and member field values."""
        member = self.program_members.setdefault(program_id, {}).setdefault(lead_id, {})
        member.update(values)
        member["status"] = status

    def upsert_object(
        self, api_name: str, key: tuple[str, ...], values: dict[str, str]
    ) -> None:
        """Insert or update a custom-object record identified by its dedupe values."""
        self.objects.setdefault(api_name, {}).setdefault(key, {}).update(values)

    def export_leads(self, email: str | None = None) -> list[dict[str, Any]]:
        """Leads as flat dicts: ``id``, field values, ``partitionName`` and ``listIds``."""
        out: list[dict[str, Any]] = []
        for lead_id, lead in self.leads.items():
            if email is not None and lead.get("email") != email:
                continue
            lists = sorted(lid for lid, members in self.lists.items() if lead_id in members)
            out.append(
                {
                    "id": lead_id,
                    **lead,
                    "partitionName": self.partitions[lead_id],
                    "listIds": lists,
                }
            )
        return out

    def export_members(self, program_id: int) -> list[dict[str, Any]]:
        """Program members as dicts: ``leadId``, ``email``, ``status`` and member fields."""
        members = self.program_members.get(program_id, {})
        return [
            {"leadId": lead_id, "email": self.leads[lead_id].get("email"), **values}
            for lead_id, values in members.items()
        ]

    def export_objects(self, api_name: str) -> list[dict[str, str]]:
        """Custom-object records of one type as dicts of field values."""
        return [dict(v) for v in self.objects.get(api_name, {}).values()]
