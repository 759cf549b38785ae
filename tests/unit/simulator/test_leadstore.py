"""The lead store: upsert on any lookup field with indexes kept in step (contract 8.5)."""

from __future__ import annotations

from orchestrator.simulator.leadstore import LeadStore


def test_upsert_insert_then_update_by_lookup_field() -> None:
    store = LeadStore()
    a = store.upsert("email", "a@example.com", {"email": "a@example.com", "firstName": "A"}, "P")
    same = store.upsert("email", "a@example.com", {"firstName": "Ann"}, "Other")
    assert a == same == 1
    assert store.leads[1] == {"email": "a@example.com", "firstName": "Ann"}
    assert store.partitions[1] == "P"  # an update does not move the lead


def test_indexes_follow_value_changes_on_every_field() -> None:
    store = LeadStore()
    store.upsert("email", "a@example.com", {"email": "a@example.com", "customerTier": "t1"}, "D")
    # first use of customerTier as lookup builds its index from existing leads
    assert store.upsert("customerTier", "t1", {"customerTier": "t2"}, "D") == 1
    assert store.upsert("customerTier", "t2", {"firstName": "X"}, "D") == 1
    # the old value no longer finds the lead: a new one is created
    assert store.upsert("customerTier", "t1", {"customerTier": "t1"}, "D") == 2
    # email index still points at lead 1 after its other fields changed
    assert store.upsert("email", "a@example.com", {"city": "Oslo"}, "D") == 1
    assert store.export_leads("a@example.com")[0]["city"] == "Oslo"


def test_lookup_by_id_is_update_only() -> None:
    store = LeadStore()
    store.upsert("email", "a@example.com", {"email": "a@example.com"}, "D")
    assert store.upsert("id", "1", {"firstName": "A"}, "D") == 1
    assert store.upsert("id", "2", {"firstName": "B"}, "D") is None
    assert store.upsert("id", "x", {"firstName": "B"}, "D") is None
    assert len(store.leads) == 1


def test_exports() -> None:
    store = LeadStore()
    lead = store.upsert("email", "a@example.com", {"email": "a@example.com"}, "D")
    assert lead is not None
    store.add_to_list(1001, lead)
    store.set_member(2001, lead, "Member", {"membershipNote": "n"})
    store.upsert_object("car_c", ("V1",), {"vin": "V1"})
    assert store.export_leads() == [
        {"id": 1, "email": "a@example.com", "partitionName": "D", "listIds": [1001]}
    ]
    assert store.export_members(2001) == [
        {"leadId": 1, "email": "a@example.com", "membershipNote": "n", "status": "Member"}
    ]
    assert store.export_objects("car_c") == [{"vin": "V1"}]
