package io.leadpulse.bench.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;

import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;

/**
 * What the peer takes from leadpulse's own rules file (scoring/default_rules.toml): the base points per
 * event type, the half-life, the late tolerance, the total cap and the temperature bands. The rest of the
 * file (caps, property rules, fit, MQL/SQL) is what the peer leaves out, on purpose: see docs/bench.md.
 * Defaults are leadpulse's (scoring/rules.py) for the keys the file may omit.
 */
final class Rules {
    static final long DAY_MS = 86_400_000L;

    final String version;
    final Map<String, Double> points;
    final double halfLifeMs;
    final long lateToleranceMs;
    final double totalCap;
    final double warm;
    final double hot;
    final double hysteresis;

    private Rules(String version, Map<String, Double> points, double halfLifeDays, double lateToleranceDays,
                  double totalCap, double warm, double hot, double hysteresis) {
        this.version = version;
        this.points = points;
        this.halfLifeMs = halfLifeDays * DAY_MS;
        this.lateToleranceMs = Math.round(lateToleranceDays * DAY_MS);
        this.totalCap = totalCap;
        this.warm = warm;
        this.hot = hot;
        this.hysteresis = hysteresis;
    }

    static Rules load(Path file) throws IOException {
        JsonNode root = new TomlMapper().readTree(file.toFile());
        JsonNode pts = required(root, "points", file);
        Map<String, Double> points = new HashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = pts.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            points.put(e.getKey(), number(e.getValue(), "points." + e.getKey(), file));
        }
        JsonNode temp = required(root, "temperature", file);
        return new Rules(
                required(root, "version", file).asText(),
                points,
                root.has("half_life_days") ? number(root.get("half_life_days"), "half_life_days", file) : 30.0,
                root.has("late_tolerance_days") ? number(root.get("late_tolerance_days"), "late_tolerance_days", file) : 7.0,
                root.has("total_cap") ? number(root.get("total_cap"), "total_cap", file) : 150.0,
                number(required(temp, "warm", file), "temperature.warm", file),
                number(required(temp, "hot", file), "temperature.hot", file),
                temp.has("hysteresis") ? number(temp.get("hysteresis"), "temperature.hysteresis", file) : 0.0);
    }

    private static JsonNode required(JsonNode node, String key, Path file) {
        JsonNode v = node.get(key);
        if (v == null) {
            throw new IllegalArgumentException(file + ": missing key " + key);
        }
        return v;
    }

    private static double number(JsonNode v, String key, Path file) {
        if (!v.isNumber()) {
            throw new IllegalArgumentException(file + ": " + key + " must be a number, got " + v);
        }
        return v.asDouble();
    }
}
