package io.leadpulse.bench.kstreams;

import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The Kafka Streams peer of `make bench`:
 *
 *   java -jar leadpulse-kstreams-peer.jar --bootstrap H:P --input T --changes T --dlq T --app-id ID
 *        --state-dir D [--rules scoring/default_rules.toml] [--threads 1] [--guarantee at_least_once]
 *        [--commit-interval-ms 1000] [--cache-bytes N]
 *
 * One source (the behaviour events), one processor with a persistent RocksDB key-value store per contact
 * (changelog-backed, Kafka Streams' defaults), two sinks (temperature changes, dead letters). Prints
 * "Ready" when the instance reaches RUNNING, and its counters when it stops (SIGTERM).
 */
public final class PeerApp {
    static final String SOURCE = "events";
    static final String PROCESSOR = "score";
    static final String STORE = "contacts";
    static final String CHANGES_SINK = "changes";
    static final String DLQ_SINK = "dlq";

    static final class Counters {
        final AtomicLong scored = new AtomicLong();
        final AtomicLong changes = new AtomicLong();
        final AtomicLong deadLetters = new AtomicLong();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = parse(argv);
        Rules rules = Rules.load(Path.of(a.getOrDefault("rules", "scoring/default_rules.toml")));
        Counters counters = new Counters();

        // RocksDB, changelog-backed (Kafka Streams' default), behind the record cache the DSL turns on by
        // default: a contact's writes between two commits reach RocksDB and the changelog once, as leadpulse
        // writes each contact once per batch.
        StoreBuilder<KeyValueStore<org.apache.kafka.common.utils.Bytes, byte[]>> store =
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STORE), Serdes.Bytes(), Serdes.ByteArray())
                        .withCachingEnabled();
        Topology topology = new Topology()
                .addSource(SOURCE, new ByteArrayDeserializer(), new ByteArrayDeserializer(), need(a, "input"))
                .addProcessor(PROCESSOR, () -> new ScoreProcessor(rules, STORE, counters), SOURCE)
                .addStateStore(store, PROCESSOR)
                .addSink(CHANGES_SINK, need(a, "changes"), new ByteArraySerializer(), new ByteArraySerializer(), PROCESSOR)
                .addSink(DLQ_SINK, need(a, "dlq"), new ByteArraySerializer(), new ByteArraySerializer(), PROCESSOR);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, need(a, "app-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(a, "bootstrap"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, need(a, "state-dir"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.getOrDefault("threads", "1"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, a.getOrDefault("guarantee", StreamsConfig.AT_LEAST_ONCE));
        // 1 s like the other contenders (Kafka Streams' default is 30 s under at_least_once, 100 ms under EOS)
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, a.getOrDefault("commit-interval-ms", "1000"));
        if (a.containsKey("cache-bytes")) {  // default: Kafka Streams' own (10 MiB record cache)
            p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, a.get("cache-bytes"));
        }
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, "1");

        KafkaStreams streams = new KafkaStreams(topology, p);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("Ready (" + before + " -> RUNNING)");
            } else if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                System.out.println("State " + now);
                stopped.countDown();
            }
            System.out.flush();
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            System.out.println("Stopped: scored " + counters.scored.get() + ", changes " + counters.changes.get()
                    + ", dead letters " + counters.deadLetters.get());
            System.out.flush();
        }));
        System.out.println("Starting " + p.getProperty(StreamsConfig.APPLICATION_ID_CONFIG) + ": "
                + p.getProperty(StreamsConfig.NUM_STREAM_THREADS_CONFIG) + " stream thread(s), "
                + p.getProperty(StreamsConfig.PROCESSING_GUARANTEE_CONFIG) + ", rules " + rules.version
                + " (" + rules.points.size() + " point values, half-life " + rules.halfLifeMs / Rules.DAY_MS + " d)");
        streams.start();
        stopped.await();
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value pairs, got " + String.join(" ", argv));
            }
            m.put(argv[i].substring(2), argv[++i]);
        }
        return m;
    }

    private static String need(Map<String, String> a, String name) {
        String v = a.get(name);
        if (v == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }
}
