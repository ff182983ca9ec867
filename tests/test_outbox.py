import pytest

from gateway.outbox import ROW_OVERHEAD, Outbox, OutboxDamaged, OutboxFull


def test_entries_come_back_in_order_and_survive_reopening(tmp_path):
    outbox = Outbox(tmp_path / "o.db", 1_000_000)
    seqs = [outbox.put("verified", f"run/{i}", f'{{"item_id":{i}}}'.encode()) for i in range(1, 11)]
    assert seqs == sorted(seqs)
    assert [e.key for e in outbox.after(0, 4)] == ["run/1", "run/2", "run/3", "run/4"]
    assert [e.key for e in outbox.after(seqs[7], 100)] == ["run/9", "run/10"]
    outbox.remove(seqs[:5])
    outbox.remove([seqs[0], 999_999])  # acknowledged twice, or unknown: no harm
    assert outbox.count == 5 and outbox.removed == 5
    size = outbox.size_bytes
    outbox.close()

    reopened = Outbox(tmp_path / "o.db", 1_000_000)
    assert reopened.count == 5 and reopened.size_bytes == size
    entries = reopened.after(0, 100)
    assert [e.key for e in entries] == [f"run/{i}" for i in range(6, 11)]
    assert entries[0].payload == b'{"item_id":6}' and entries[0].kind == "verified"
    # numbers are never reused: a new entry sorts after every old one
    assert reopened.put("rejected", "run/11", b"{}") > seqs[-1]


def test_quota_refuses_records_and_frees_room_on_acknowledgement(tmp_path):
    payload = b"x" * 100
    entry_size = len(payload) + len("run/00") + len("verified") + ROW_OVERHEAD
    outbox = Outbox(tmp_path / "o.db", entry_size * 3)
    seqs = [outbox.put("verified", f"run/{i:02}", payload) for i in range(3)]
    assert outbox.fill == pytest.approx(1.0)
    with pytest.raises(OutboxFull, match="outbox is full .3 records"):
        outbox.put("verified", "run/03", payload)
    assert outbox.count == 3  # the refused record was not half-written
    outbox.remove(seqs[:1])
    outbox.put("verified", "run/04", payload)
    assert [e.key for e in outbox.after(0, 10)] == ["run/01", "run/02", "run/04"]


def test_a_damaged_file_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxDamaged, match=r"o\.db cannot be opened .* move it aside"):
        Outbox(path, 1000)
