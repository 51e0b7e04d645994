"""Contender (a) of `bench/compare.py`: the Python limit — plain aiokafka consume → produce, no work.

    python bench/raw_passthrough.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC GROUP [--commit-interval S]

`getmany` in large batches, every message re-sent unchanged (same key, same value) to the output
topic, offsets committed every `--commit-interval` seconds once the batches read so far are
acknowledged by the broker (at-least-once, like the other contenders). Prints "Ready" when the
group has its assignment. Runs until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def run(args) -> None:
    consumer = AIOKafkaConsumer(
        args.input, bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks=1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment() and not stop.is_set():
            await consumer.getmany(timeout_ms=100, max_records=1)  # joins the group; nothing consumed yet
            if consumer.assignment():
                break
        # Anything fetched by the join loop above was not returned (max_records=1 still returns one):
        # rewind to the committed positions so that every message goes through the measured loop.
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        print("Ready", flush=True)
        pending: list = []
        offsets: dict = {}
        last_commit = time.monotonic()
        send = producer.send
        out = args.output
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=args.max_records)
            for tp, msgs in batch.items():
                for m in msgs:
                    pending.append(await send(out, value=m.value, key=m.key))
                offsets[tp] = msgs[-1].offset + 1
            if offsets and time.monotonic() - last_commit >= args.commit_interval:
                if pending:
                    await asyncio.gather(*pending)
                    pending = []
                await consumer.commit(offsets)
                offsets = {}
                last_commit = time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("bootstrap")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("group")
    p.add_argument("--commit-interval", type=float, default=1.0)
    p.add_argument("--max-records", type=int, default=10_000)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
