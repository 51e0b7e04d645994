package io.leadpulse.bench.kstreams;

import io.leadpulse.BehaviourEvent;
import io.leadpulse.ChangeKind;
import io.leadpulse.EventType;
import io.leadpulse.LifecycleChange;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.Collections;

/**
 * Per event: Confluent-framed Avro BehaviourEvent in, the contact's state from the RocksDB store, the
 * scoring step, the state back, a LifecycleChange (Confluent-framed Avro) out per temperature change.
 * Undecodable, unknown-type, invalid and late events go to the dead-letter sink with their original bytes.
 */
final class ScoreProcessor implements Processor<byte[], byte[], byte[], byte[]> {
    static final int EVENT_SCHEMA_ID = 2;    // schemas/catalogue.toml: behaviour_event.v2.avsc
    static final int CHANGE_SCHEMA_ID = 40;  // lifecycle_change.v1.avsc
    static final long MAX_FUTURE_MS = Rules.DAY_MS;  // leadpulse's validate_event

    private final Scorer scorer;
    private final double[] pointsByType;
    private final String rulesVersion;
    private final String storeName;
    private final PeerApp.Counters counters;

    private ProcessorContext<byte[], byte[]> ctx;
    private KeyValueStore<Bytes, byte[]> store;

    private final SpecificDatumReader<BehaviourEvent> reader = new SpecificDatumReader<>(BehaviourEvent.class);
    private final SpecificDatumWriter<LifecycleChange> writer = new SpecificDatumWriter<>(LifecycleChange.class);
    private BinaryDecoder decoder;
    private BinaryEncoder encoder;
    private BehaviourEvent event;
    private final LifecycleChange change = new LifecycleChange();
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(256);

    ScoreProcessor(Rules rules, String storeName, PeerApp.Counters counters) {
        this.scorer = new Scorer(rules);
        this.rulesVersion = rules.version;
        this.storeName = storeName;
        this.counters = counters;
        EventType[] types = EventType.values();
        this.pointsByType = new double[types.length];
        for (EventType t : types) {
            pointsByType[t.ordinal()] = rules.points.getOrDefault(t.name(), 0.0);  // not listed: worth 0
        }
        change.setKind(ChangeKind.temperature);
        change.setFit(0.0);
        change.setGrade("C");  // leadpulse's grade for a fit of 0
        change.setExplanation(Collections.emptyMap());
        change.setRulesVersion(rulesVersion);
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
        this.ctx = context;
        this.store = context.getStateStore(storeName);
    }

    @Override
    public void process(Record<byte[], byte[]> rec) {
        byte[] value = rec.value();
        byte[] key = rec.key();
        BehaviourEvent ev = decode(value);
        // occurred_at is a timestamp-millis: the generated class holds it as an Instant
        long t = ev == null ? 0 : ev.getOccurredAt().toEpochMilli();
        if (ev == null || key == null || ev.getEventType() == EventType.unknown || ev.getEventId().isEmpty()
                || ev.getContactId().isEmpty() || t <= 0 || t > System.currentTimeMillis() + MAX_FUTURE_MS) {
            deadLetter(rec);
            return;
        }
        Bytes k = Bytes.wrap(key);
        byte[] raw = store.get(k);
        ContactState st = raw == null ? new ContactState() : ContactState.decode(raw);
        if (!scorer.apply(st, t, pointsByType[ev.getEventType().ordinal()])) {
            deadLetter(rec);  // older than the late tolerance
            return;
        }
        store.put(k, st.encode());
        counters.scored.incrementAndGet();
        for (int i = 0; i < scorer.changes; i++) {
            ctx.forward(new Record<>(key, encodeChange(ev, i), rec.timestamp()), PeerApp.CHANGES_SINK);
            counters.changes.incrementAndGet();
        }
    }

    private BehaviourEvent decode(byte[] value) {
        if (value == null || value.length < 5 || value[0] != 0) {
            return null;
        }
        int schemaId = ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
        if (schemaId != EVENT_SCHEMA_ID) {
            return null;  // the peer reads only the v2 writer schema (leadpulse resolves v1 too)
        }
        try {
            decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
            event = reader.read(event, decoder);
            return decoder.isEnd() ? event : null;
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    private byte[] encodeChange(BehaviourEvent ev, int i) {
        String cid = ev.getContactId();
        String from = Scorer.NAMES[scorer.from[i]];
        String to = Scorer.NAMES[scorer.to[i]];
        String cause = scorer.caused[i] ? ev.getEventId() : null;
        long at = scorer.at[i];
        double s = scorer.score[i];
        // leadpulse hashes this same preimage (blake2b-128); the peer keeps it as it is
        change.setChangeId(cid + "|temperature|" + from + "|" + to + "|" + (cause == null ? "" : cause) + "|" + at);
        change.setContactId(cid);
        change.setFromValue(from);
        change.setToValue(to);
        change.setAt(java.time.Instant.ofEpochMilli(at));
        change.setCauseEventId(cause);
        change.setScore(s);
        change.setEngagement(s);
        out.reset();
        out.write(0);
        out.write(CHANGE_SCHEMA_ID >>> 24);
        out.write(CHANGE_SCHEMA_ID >>> 16);
        out.write(CHANGE_SCHEMA_ID >>> 8);
        out.write(CHANGE_SCHEMA_ID);
        try {
            encoder = EncoderFactory.get().binaryEncoder(out, encoder);
            writer.write(change, encoder);
            encoder.flush();
        } catch (IOException e) {
            throw new IllegalStateException("cannot encode a LifecycleChange", e);
        }
        return out.toByteArray();
    }

    private void deadLetter(Record<byte[], byte[]> rec) {
        ctx.forward(rec, PeerApp.DLQ_SINK);
        counters.deadLetters.incrementAndGet();
    }
}
