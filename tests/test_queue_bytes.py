"""The write queue is bounded by bytes as well as by records (``limits.max_queue_bytes``): a
few requests of large records fill it long before their record count would, and are refused
retryably; once committed, their bytes are counted out again."""

from __future__ import annotations

import pytest
from conftest import make_tagger, running_writer, slow_store
from otlp_factory import trace_request

from collector.decode import decode_body
from collector.errors import Overloaded


def test_a_queue_full_of_bytes_refuses_retryably_and_drains(tmp_path):
    tagger = make_tagger()
    batches = [
        decode_body("traces", trace_request(256, seed=i).SerializeToString(), "protobuf", tagger)
        for i in range(6)
    ]
    size = batches[0].nbytes
    assert size > 256 * 200  # Arrow buffers of 256 spans with ~10 attributes each
    # Room for about three of them; the record bound is far away.
    bounds = {"max_queue_records": 10**6, "max_queue_bytes": int(size * 3.5)}
    with running_writer(slow_store(tmp_path / "q.duckdb", delay=0.5), **bounds) as writer:
        accepted, refused = [], 0
        for batch in batches:
            try:
                accepted.append(writer.submit(batch))
            except Overloaded as exc:
                refused += 1
                assert exc.retry_after >= 1 and "bytes" in str(exc)
        assert 3 <= len(accepted) <= 4 and refused == len(batches) - len(accepted)
        for future in accepted:
            future.result(30)
        assert writer._pending_bytes == 0 and writer.pending == 0
        writer.submit(batches[-1]).result(30)  # room again


@pytest.mark.parametrize("records", [1, 10])
def test_one_request_larger_than_the_bound_still_goes_in_alone(tmp_path, records):
    batch = decode_body(
        "traces", trace_request(records).SerializeToString(), "protobuf", make_tagger()
    )
    with running_writer(slow_store(tmp_path / "one.duckdb", delay=0.0), max_queue_bytes=1) as w:
        w.submit(batch).result(30)  # an empty queue takes any one request


def test_a_full_queue_refuses_before_decoding(tmp_path, monkeypatch):
    """Under overload the CPU goes to what can be queued: a request that arrives while the
    queue has no room is refused before it is decoded."""
    import asyncio

    from collector import ingest

    tagger = make_tagger()
    body = trace_request(64).SerializeToString()
    first = decode_body("traces", body, "protobuf", tagger)
    store = slow_store(tmp_path / "full.duckdb", delay=1.0)
    with running_writer(store, max_queue_records=64, max_queue_bytes=10**9) as writer:
        ingestor = ingest.Ingestor(writer, tagger, fast_decode=True, inline_bytes=1 << 20)
        decoded: list[bytes] = []
        monkeypatch.setattr(ingest, "decode_body", lambda _s, b, *_a: decoded.append(b) or first)
        try:
            future = writer.submit(first)  # the queue is now full (64 of 64 records)
            with pytest.raises(Overloaded):
                asyncio.run(ingestor.export_body("traces", body, "protobuf"))
            assert decoded == [] and writer.stats["rejected_overload"] == 1
            future.result(30)
            writer.refuse_if_full()  # room again
        finally:
            ingestor.close()


def test_the_writer_is_busy_while_its_queue_fills_and_after_a_refusal(tmp_path, monkeypatch):
    """Writer.busy, what compaction waits on: the queue over a quarter full, or a request
    refused in the last few seconds (collector.writer_load; the clock stands still here, so
    the commits' own load stays 0)."""
    from collector import writer_load

    clock = [1000.0]
    monkeypatch.setattr(writer_load.time, "monotonic", lambda: clock[0])
    batch = decode_body("traces", trace_request(64).SerializeToString(), "protobuf", make_tagger())
    store = slow_store(tmp_path / "busy.duckdb", delay=1.0)
    with running_writer(store, max_queue_records=200, max_queue_bytes=10**9) as writer:
        assert not writer.busy()
        first = writer.submit(batch)  # 64 of 200: over a quarter
        assert writer.busy()
        first.result(30)
        assert not writer.busy()
        futures = [writer.submit(batch) for _ in range(3)]
        with pytest.raises(Overloaded):
            writer.submit(batch)
        for future in futures:
            future.result(30)
        assert writer.pending == 0 and writer.busy()  # refused a moment ago
        clock[0] += writer_load.BUSY_AFTER_REFUSAL + 0.1
        assert not writer.busy()


def test_the_writer_is_busy_while_ingest_takes_much_of_its_time(monkeypatch):
    """Exporters wait for their acknowledgements, so a busy writer shows as latency before the
    queue fills: ingest commits that took more than BUSY_LOAD of the last ~10 s count too."""
    from collector import writer_load

    clock = [1000.0]
    monkeypatch.setattr(writer_load.time, "monotonic", lambda: clock[0])
    load = writer_load.WriterLoad()
    for _ in range(10):  # a commit of 0.1 s every second: a tenth of the writer
        clock[0] += 1.0
        load.worked(0.1)
    assert 0.05 < load.load() < 0.1 and not load.busy(0.0, 0.0)
    for _ in range(10):  # half of it
        clock[0] += 1.0
        load.worked(0.5)
    assert load.load() > writer_load.BUSY_LOAD and load.busy(0.0, 0.0)
    clock[0] += 3 * writer_load.LOAD_SECONDS  # then quiet
    assert load.load() < 0.05 and not load.busy(0.0, 0.0)
