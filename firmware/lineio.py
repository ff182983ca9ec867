"""The line I/O board's logic, free of hardware so it runs unchanged on the Pico and under CPython
in the host tests: the photo-eye debouncer, the quadrature decoder, the reject tracker (a FIFO
from the photo-eye to the ejector), and the board's side of the gateway link.

ISR-safe code: ``Line.photo_eye`` and ``Line.encoder`` run in hard interrupt handlers, where
MicroPython cannot allocate. Everything they reach creates no object: no floats, no long ints
(the encoder count and the ticks stay small ints because they wrap), no tuples or lists built
or returned, only attributes that already exist and lists allocated in ``__init__``. Both
handlers run from the one GPIO interrupt and never interrupt each other; the main loop
(``Link``) only reads what they write, or writes what they only read. Everything in ``Link``
runs in the main loop and may allocate.
"""

import time

from firmware import protocol

TICKS_PERIOD = 1 << 30  # time.ticks_us() wraps here on the RP2040 (a small int's range)
COUNT_PERIOD = 1 << 29  # the encoder count kept by the ISR wraps here, so it stays a small int
MAX_ITEM_ID = (1 << 30) - 1  # item ids run 1 .. MAX_ITEM_ID, then 1 again (3 years at 10 items/s)

NO_VERDICT, PASS, REJECT = 0, 1, 2

# Events from the ISRs to the main loop
TRIGGERED, EJECTED, UNTRACKED = 1, 2, 3

# Quadrature steps by (previous A<<1|B) << 2 | (new A<<1|B): forward when A leads B
# (00 -> 10 -> 11 -> 01 -> 00); _SKIPPED when both channels changed, a count lost.
_SKIPPED = 2
_STEPS = (0, -1, 1, _SKIPPED, 1, 0, _SKIPPED, -1, -1, _SKIPPED, 0, 1, _SKIPPED, 1, -1, 0)


def count_diff(a, b):
    """``a - b`` for encoder counts that wrap at COUNT_PERIOD (the signed shortest way)."""
    return (a - b + COUNT_PERIOD // 2) % COUNT_PERIOD - COUNT_PERIOD // 2


class Debouncer:
    """Photo-eye debounce on the leading edge: a rising edge is a pack arriving when the input
    had been low for at least the debounce time before it. The trigger goes out at the first
    edge, not after a settling delay, so the camera sees the pack where the photo-eye saw it;
    bounce on either edge (a short low) and a gap shorter than the debounce time make no item."""

    def __init__(self, debounce_us, level, now_us):
        self.debounce_us = debounce_us
        self.level = level
        self.low_since = time.ticks_add(now_us, -debounce_us)  # low at start counts as settled

    def edge(self, level, now_us):  # ISR
        """True when this edge is a pack arriving. ``level`` is the input read in the handler;
        two edges may have passed since the last reading, so a repeated level is no edge."""
        arriving = level and not self.level and time.ticks_diff(now_us, self.low_since) >= self.debounce_us
        if not level:
            self.low_since = now_us  # a low after a missed high restarts the wait as well
        self.level = level
        return bool(arriving)


class QuadratureDecoder:
    """x4 decoding of an A/B encoder: every edge of either channel is one count."""

    def __init__(self, a, b):
        self.state = a << 1 | b
        self.count = 0  # wraps at COUNT_PERIOD; the main loop unwraps it (Unwrapper)
        self.skipped = 0  # both channels changed between two readings: counts lost

    def update(self, a, b):  # ISR
        state = a << 1 | b
        step = _STEPS[self.state << 2 | state]
        self.state = state
        if step == _SKIPPED:
            self.skipped += 1
        elif step:
            self.count = (self.count + step) % COUNT_PERIOD


class Unwrapper:
    """Extends a counter that wraps at ``period`` (ticks_us, the ISR's encoder count) to one that
    does not: a signed integer that survives any run. Main loop only (a long int allocates); it
    must see the counter at least once per half period (9 minutes for ticks_us)."""

    def __init__(self, period, raw, total):
        self.period = period
        self.raw = raw
        self.total = total

    def at(self, raw):
        """``raw`` unwrapped, taking the way within half a period of the last reading."""
        half = self.period // 2
        return self.total + (raw - self.raw + half) % self.period - half

    def advance(self, raw):
        self.total = self.at(raw)
        self.raw = raw


class RejectTracker:
    """The items between the photo-eye and the ejector, oldest first, each with the encoder count
    at which it reaches the ejector and its verdict. A ring allocated once: the photo-eye ISR
    adds, the encoder ISR pops, the main loop records verdicts."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.item_ids = [0] * capacity
        self.eject_at = [0] * capacity
        self.verdicts = [NO_VERDICT] * capacity
        self.first = 0  # slot of the oldest item
        self.size = 0
        self.popped_id = 0  # the item pop() took (an ISR cannot return a pair without allocating)

    def add(self, item_id, eject_at):  # ISR
        """False when the ring is full: the item cannot be tracked."""
        if self.size == self.capacity:
            return False
        slot = (self.first + self.size) % self.capacity
        self.item_ids[slot] = item_id
        self.eject_at[slot] = eject_at
        self.verdicts[slot] = NO_VERDICT
        self.size += 1
        return True

    def due(self, count):  # ISR
        """True when the oldest item has reached the ejector at encoder ``count``."""
        return self.size > 0 and count_diff(count, self.eject_at[self.first]) >= 0

    def pop(self):  # ISR
        """Takes the oldest item out; returns its verdict, its id is left in ``popped_id``."""
        slot = self.first
        self.popped_id = self.item_ids[slot]
        self.first = (slot + 1) % self.capacity
        self.size -= 1
        return self.verdicts[slot]

    def decide(self, item_id, verdict):  # main loop
        """Records the verdict of a pending item; False when the item is not pending.

        No interrupt lock: the ISR only ever pops the oldest item. If it pops this one between
        the search and the write, the item leaves without its verdict and is rejected as
        no_verdict and reported so: fail-safe. A slot is reused only after a whole ring of items.
        """
        for n in range(self.size):
            slot = (self.first + n) % self.capacity
            if self.item_ids[slot] == item_id:
                self.verdicts[slot] = verdict
                return True
        return False


class EventRing:
    """Events from the ISRs to the main loop, in slots allocated once. Single producer, single
    consumer: the ISR fills a slot before it moves ``written``, the main loop reads it before it
    moves ``read``, so neither needs a lock. A full ring drops the event and counts it."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.kinds = [0] * capacity
        self.item_ids = [0] * capacity
        self.counts = [0] * capacity
        self.ticks = [0] * capacity
        self.details = [0] * capacity
        self.written = 0
        self.read = 0
        self.lost = 0

    def push(self, kind, item_id, count, ticks, detail):  # ISR
        slot = self.written
        following = (slot + 1) % self.capacity
        if following == self.read:
            self.lost += 1
            return
        self.kinds[slot] = kind
        self.item_ids[slot] = item_id
        self.counts[slot] = count
        self.ticks[slot] = ticks
        self.details[slot] = detail
        self.written = following

    def pop(self):  # main loop
        """(kind, item_id, count, ticks, detail) of the oldest event, or None."""
        slot = self.read
        if slot == self.written:
            return None
        event = (self.kinds[slot], self.item_ids[slot], self.counts[slot], self.ticks[slot], self.details[slot])
        self.read = (slot + 1) % self.capacity
        return event


class Line:
    """The line at the board: photo-eye, encoder, the three pulse outputs and the tracker.

    ``trigger``, ``strobe`` and ``reject`` are outputs with ``fire(width_us)``, which must be
    ISR-safe (main.py: a PIO state machine per output)."""

    def __init__(self, config, trigger, strobe, reject, photo_eye_level, a, b, now_us, capacity=128):
        self.trigger, self.strobe, self.reject = trigger, strobe, reject
        self.debouncer = Debouncer(config.debounce_ms * 1000, photo_eye_level, now_us)
        self.decoder = QuadratureDecoder(a, b)
        self.tracker = RejectTracker(capacity)
        self.events = EventRing(2 * capacity)
        self.config = config
        self.eject_counts = config.eject_counts
        self.trigger_us, self.strobe_us, self.reject_us = config.trigger_us, config.strobe_us, config.reject_us
        self.next_item_id = 1
        self.items = 0  # photo-eye edges taken as packs
        self.rejected = 0  # ejected on the gateway's verdict
        self.no_verdict = 0  # ejected without a verdict (fail-safe)
        self.passed = 0
        self.untracked = 0  # items the full tracker could not take

    def configure(self, config):  # main loop
        """Runs ``config`` from now on; False (and nothing changed) when it is out of range.
        Items already on the belt keep the ejector position they were given."""
        if not protocol.valid_config(config):
            return False
        # Each is one small-int store, which an ISR sees either before or after.
        self.debouncer.debounce_us = config.debounce_ms * 1000
        self.eject_counts = config.eject_counts
        self.trigger_us, self.strobe_us, self.reject_us = config.trigger_us, config.strobe_us, config.reject_us
        self.config = config
        return True

    def photo_eye(self, level, now_us):  # ISR
        if not self.debouncer.edge(level, now_us):
            return
        self.trigger.fire(self.trigger_us)
        self.strobe.fire(self.strobe_us)
        item_id = self.next_item_id
        self.next_item_id = item_id + 1 if item_id < MAX_ITEM_ID else 1
        self.items += 1
        count = self.decoder.count
        self.events.push(TRIGGERED, item_id, count, now_us, 0)
        if not self.tracker.add(item_id, (count + self.eject_counts) % COUNT_PERIOD):
            self.untracked += 1
            self.events.push(UNTRACKED, item_id, count, now_us, 0)

    def encoder(self, a, b, now_us):  # ISR
        self.decoder.update(a, b)
        count = self.decoder.count
        while self.tracker.due(count):
            verdict = self.tracker.pop()
            if verdict == PASS:
                self.passed += 1
                continue
            self.reject.fire(self.reject_us)
            if verdict == REJECT:
                self.rejected += 1
                reason = protocol.REASON_VERDICT
            else:
                self.no_verdict += 1
                reason = protocol.REASON_NO_VERDICT
            self.events.push(EJECTED, self.tracker.popped_id, count, now_us, reason)


STATUS_PERIOD_US = 1_000_000  # the board sends its STATUS this often (and after each CONFIG)


class Link:
    """The board's side of the gateway link, run by the main loop: bytes in, bytes out.

    Applies CONFIG (answered with the CONFIG now running, then a STATUS) and VERDICT, turns the
    ISRs' events into TRIGGER, EJECTED and ERROR, sends HEARTBEAT every heartbeat period and
    STATUS every second, and watches the gateway's heartbeat (lost after 3 periods)."""

    def __init__(self, line, now_us):
        self.line = line
        self.receiver = protocol.Receiver()
        self.clock = Unwrapper(TICKS_PERIOD, now_us, now_us)  # µs since boot: ticks_us starts at 0
        self.position = Unwrapper(COUNT_PERIOD, line.decoder.count, 0)
        self.configured = False
        self.beat = 0
        self.next_beat = now_us
        self.next_status = now_us
        self.gateway_seen = now_us
        self.gateway_alive = False
        self.late_verdicts = 0
        self.unknown_verdicts = 0
        self.events_lost_reported = 0

    def poll(self, now_us, received):
        """Handles the bytes ``received`` since the last call; returns the bytes to send."""
        self.clock.advance(now_us)
        self.position.advance(self.line.decoder.count)
        out = []
        for message in self.receiver.feed(received):
            self._handle(message, now_us, out)
        self._events(out)
        self._timers(now_us, out)
        return b"".join(protocol.encode(message) for message in out)

    def status(self):
        line = self.line
        flags = (protocol.FLAG_CONFIGURED if self.configured else 0) | (
            protocol.FLAG_GATEWAY_ALIVE if self.gateway_alive else 0
        )
        return protocol.Status(
            self.clock.total,
            self.position.total,
            line.items,
            line.rejected,
            line.no_verdict,
            line.passed,
            line.tracker.size,
            line.untracked,
            line.events.lost,
            self.late_verdicts,
            self.unknown_verdicts,
            line.decoder.skipped,
            self.receiver.crc_errors,
            self.receiver.length_errors,
            self.receiver.unknown_types,
            flags,
        )

    def _handle(self, message, now_us, out):
        kind = type(message)
        if kind is protocol.Heartbeat:
            self.gateway_seen = now_us
            self.gateway_alive = True
        elif kind is protocol.Verdict:
            self._verdict(message, out)
        elif kind is protocol.Config:
            if self.line.configure(message):
                self.configured = True
                out.append(message)
                out.append(self.status())
                self.next_beat = now_us  # beat at once and from now on at the new period
                self.next_status = time.ticks_add(now_us, STATUS_PERIOD_US)
            else:
                out.append(protocol.Error(protocol.ERROR_BAD_CONFIG, 0))
        else:
            out.append(protocol.Error(protocol.ERROR_UNEXPECTED_MESSAGE, protocol.message_type(message)))

    def _verdict(self, message, out):
        if self.line.tracker.decide(message.item_id, REJECT if message.reject else PASS):
            return
        if 1 <= message.item_id < self.line.next_item_id:  # triggered, and gone past the ejector
            self.late_verdicts += 1
            out.append(protocol.Error(protocol.ERROR_LATE_VERDICT, message.item_id))
        else:
            self.unknown_verdicts += 1
            out.append(protocol.Error(protocol.ERROR_UNKNOWN_ITEM, message.item_id))

    def _events(self, out):
        while True:
            event = self.line.events.pop()
            if event is None:
                break
            kind, item_id, count, ticks, detail = event
            encoder, time_us = self.position.at(count), self.clock.at(ticks)
            if kind == TRIGGERED:
                out.append(protocol.Trigger(item_id, encoder, time_us))
            elif kind == EJECTED:
                out.append(protocol.Ejected(item_id, encoder, time_us, detail))
            else:
                out.append(protocol.Error(protocol.ERROR_UNTRACKED, item_id))
        lost = self.line.events.lost
        if lost != self.events_lost_reported:
            out.append(protocol.Error(protocol.ERROR_EVENTS_LOST, lost - self.events_lost_reported))
            self.events_lost_reported = lost

    def _timers(self, now_us, out):
        period_us = self.line.config.heartbeat_ms * 1000
        if time.ticks_diff(now_us, self.next_beat) >= 0:
            self.beat += 1
            out.append(protocol.Heartbeat(self.beat))
            self.next_beat = time.ticks_add(now_us, period_us)
        if time.ticks_diff(now_us, self.next_status) >= 0:
            out.append(self.status())
            self.next_status = time.ticks_add(now_us, STATUS_PERIOD_US)
        silent_us = time.ticks_diff(now_us, self.gateway_seen)
        if self.gateway_alive and silent_us > 3 * period_us:
            self.gateway_alive = False
            out.append(protocol.Error(protocol.ERROR_GATEWAY_LOST, silent_us // 1000))
