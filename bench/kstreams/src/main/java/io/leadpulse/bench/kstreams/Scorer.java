package io.leadpulse.bench.kstreams;

/**
 * The peer's scoring step: base points, exact event-time exponential decay, temperature with hysteresis.
 * The arithmetic is leadpulse's (scoring/model.py `apply_events`, scoring/engagement.py): the same
 * reference frame (`ref` = the UTC day of the first scored event minus the late tolerance), the same
 * weights 2^((t - ref)/H), the same evaluation at the contact's clock, the same 1e-9 tolerance on the
 * thresholds, so that its temperatures equal the core's on the base-points-only model bit for bit.
 *
 * A cooling that decay alone caused before an event is emitted at the event's instant, as one change
 * (leadpulse emits each step at its exact instant, and also cools silent contacts on a wall-clock timer).
 */
final class Scorer {
    static final byte COLD = 0, WARM = 1, HOT = 2;
    static final String[] NAMES = {"cold", "warm", "hot"};
    /** leadpulse's SCORE_TOLERANCE (scoring/model.py): a score within float rounding of a bar has reached it. */
    static final double SCORE_TOLERANCE = 1e-9;
    /** leadpulse's REBASE_HALF_LIVES (scoring/engagement.py). */
    static final double REBASE_HALF_LIVES = 32;
    static final long DAY_MS = Rules.DAY_MS;

    final double invH;
    final long tol;
    final double cap;
    final double warmBar;
    final double hotBar;
    final double hysteresis;

    /** The changes of the last `apply` (at most two: decay before the event, then the event). */
    final byte[] from = new byte[2];
    final byte[] to = new byte[2];
    final long[] at = new long[2];
    final boolean[] caused = new boolean[2];
    final double[] score = new double[2];
    int changes;

    Scorer(Rules rules) {
        this.invH = 1.0 / rules.halfLifeMs;
        this.tol = rules.lateToleranceMs;
        this.cap = rules.totalCap;
        this.warmBar = rules.warm - SCORE_TOLERANCE;
        this.hotBar = rules.hot - SCORE_TOLERANCE;
        this.hysteresis = rules.hysteresis;
    }

    /** Same decisions as scoring/lifecycle.py `next_temperature`. */
    byte next(byte current, double s) {
        double h = hysteresis;
        if (current == HOT) {
            if (s >= hotBar - h) return HOT;
            return s >= warmBar - h ? WARM : COLD;
        }
        if (current == WARM) {
            if (s >= hotBar) return HOT;
            return s >= warmBar - h ? WARM : COLD;
        }
        if (s >= hotBar) return HOT;
        return s >= warmBar ? WARM : COLD;
    }

    /** The score implied by a decayed sum (fit is 0: the peer has no profiles). */
    double score(double engagement) {
        return engagement < cap ? engagement : cap;
    }

    /**
     * Applies one event worth `points` at event time `t` to `st` (mutated). Returns false, and leaves the
     * state as it was, for an event older than the late tolerance (a dead letter).
     */
    boolean apply(ContactState st, long t, double points) {
        changes = 0;
        long floor = st.wm - tol;
        if (floor < 1) floor = 1;
        if (t < floor) {
            return false;
        }
        if (t > st.wm) {
            st.wm = t;
            if (st.hasRef && (st.wm - st.ref) * invH > REBASE_HALF_LIVES) {  // keep the weights far from overflow
                long newRef = Math.floorDiv(st.wm - tol, DAY_MS) * DAY_MS;
                st.total *= Math.pow(2.0, (st.ref - newRef) * invH);
                st.ref = newRef;
            }
        }
        if (points != 0.0 && !st.hasRef) {
            st.ref = Math.floorDiv(st.wm - tol, DAY_MS) * DAY_MS;
            st.hasRef = true;
        }
        double d;
        double w;
        if (t > st.asOf) {
            d = Math.pow(2.0, (st.ref - t) * invH);
            double before = score(st.total * d);
            byte moved = next(st.temperature, before);  // decay alone, up to this event
            if (moved != st.temperature) {
                record(st.temperature, moved, t, false, before);
                st.temperature = moved;
            }
            st.asOf = t;
            w = 1.0 / d;
        } else {
            d = Math.pow(2.0, (st.ref - st.asOf) * invH);
            w = t == st.asOf ? 1.0 / d : Math.pow(2.0, (t - st.ref) * invH);
        }
        if (points != 0.0) {
            st.total += points * w;
        }
        double after = score(st.total * d);
        byte moved = next(st.temperature, after);
        if (moved != st.temperature) {
            record(st.temperature, moved, st.asOf, true, after);
            st.temperature = moved;
        }
        return true;
    }

    private void record(byte f, byte t, long when, boolean cause, double s) {
        from[changes] = f;
        to[changes] = t;
        at[changes] = when;
        caused[changes] = cause;
        score[changes] = s;
        changes++;
    }
}
