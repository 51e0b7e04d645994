package io.leadpulse.bench.kstreams;

import java.nio.ByteBuffer;

/**
 * One contact's state in the RocksDB store: the engagement kept as ONE decayed sum at a reference
 * instant (leadpulse keeps one per rule, scoring/engagement.py), the contact's clock, the newest event
 * time (for the late tolerance) and the temperature. 34 bytes, fixed layout, big-endian.
 */
final class ContactState {
    static final int SIZE = 8 + 8 + 8 + 8 + 1 + 1;

    long asOf;          // the contact's clock: the latest event time applied
    long wm;            // the newest event time seen (late tolerance is measured from it)
    long ref;           // the instant `total` refers to
    double total;       // sum of points_i * 2^((t_i - ref) / H)
    byte temperature;   // Scorer.COLD / WARM / HOT
    boolean hasRef;     // false until the first event worth points fixed `ref`

    byte[] encode() {
        ByteBuffer b = ByteBuffer.allocate(SIZE);
        b.putLong(asOf).putLong(wm).putLong(ref).putDouble(total).put(temperature).put((byte) (hasRef ? 1 : 0));
        return b.array();
    }

    static ContactState decode(byte[] data) {
        if (data.length != SIZE) {
            throw new IllegalStateException("contact state of " + data.length + " bytes, expected " + SIZE);
        }
        ByteBuffer b = ByteBuffer.wrap(data);
        ContactState s = new ContactState();
        s.asOf = b.getLong();
        s.wm = b.getLong();
        s.ref = b.getLong();
        s.total = b.getDouble();
        s.temperature = b.get();
        s.hasRef = b.get() != 0;
        return s;
    }
}
