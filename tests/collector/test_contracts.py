"""The accounts-and-identity contracts (IdentityLink, AccountMembership, ContactMerge) against the
reference Avro implementation (avro-python3), both ways, as tests/streams/test_codec.py does for
the others; and the catalogue ids they are written with."""

from __future__ import annotations

import io

import fastavro
import pytest

from streams.codec import AvroCodec, Catalogue
from tests.streams.test_codec import millis, reference_decode, reference_encode

codec = AvroCodec()
cat = Catalogue()

RECORDS = [
    ("IdentityLink", 70, {"link_id": "website:m-1:link", "anonymous_id": "a-1", "contact_id": "u-1",
                          "linked_at": 1_765_000_000_123, "source": "website"}),
    ("AccountMembership", 80, {"membership_id": "website:m-2:membership", "contact_id": "u-1",
                               "account_id": "acme-42", "account_domain": "acme.example", "account_name": "Acme",
                               "account_industry": "software", "account_size": 420, "account_country": "FR",
                               "active": True, "updated_at": 1_765_000_000_456, "source": "website"}),
    ("AccountMembership", 80, {"membership_id": "hubspot:33:9:membership", "contact_id": "hubspot:5",
                               "account_id": "hubspot-company:7", "account_domain": None, "account_name": None,
                               "account_industry": None, "account_size": None, "account_country": None,
                               "active": False, "updated_at": 1, "source": "hubspot"}),
    ("ContactMerge", 90, {"merge_id": "hubspot:33:8:hubspot:2", "winner": "hubspot:1", "loser": "hubspot:2",
                          "merged_at": 1_765_000_000_789, "source": "hubspot"}),
]


@pytest.mark.parametrize("name,schema_id,record", RECORDS)
def test_the_reference_reads_what_we_write_and_we_read_what_it_writes(name, schema_id, record):
    assert cat.writer_id(name) == schema_id
    ours = codec.encode(name, record)
    assert ours[1:5] == schema_id.to_bytes(4, "big")
    ref = {k: millis(v) for k, v in reference_decode(ours).items()}
    assert ref == record
    theirs = reference_encode(schema_id, record)
    assert theirs == ours  # byte for byte
    assert codec.decode(name, theirs) == record


def test_membership_defaults_resolve_from_a_minimal_writer():
    """A producer that knows only the required fields (an older or leaner writer) is still read:
    every optional account field defaults to null and `active` to true."""
    minimal = {"type": "record", "name": "AccountMembership", "namespace": "io.leadpulse", "fields": [
        {"name": f, "type": "string"} for f in ("membership_id", "contact_id", "account_id", "source")] + [
        {"name": "updated_at", "type": "long"}]}
    writer = fastavro.parse_schema(minimal)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, {"membership_id": "m", "contact_id": "c", "account_id": "a",
                                             "source": "s", "updated_at": 5})
    buf.seek(0)
    got = fastavro.schemaless_reader(buf, writer, cat.reader_schema("AccountMembership"))
    assert got["active"] is True and got["account_domain"] is None and got["updated_at"] == 5
