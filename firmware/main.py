"""The line I/O board's firmware on a Raspberry Pi Pico (RP2040): wires the pins, the UART and
the PIO pulse outputs to the line's logic (lineio) and runs the main loop. Runs at boot as the
board's /main.py; the pin map and wiring are in README.md."""

import time

import micropython
import rp2
from machine import UART, Pin

from firmware import lineio, protocol

UART_ID, UART_TX_PIN, UART_RX_PIN, BAUDRATE = 0, 0, 1, 115200
PHOTO_EYE_PIN = 2
ENCODER_A_PIN, ENCODER_B_PIN = 3, 4
TRIGGER_PIN, STROBE_PIN, REJECT_PIN = 6, 7, 8

# What the board runs from power-on until the gateway's CONFIG arrives: set eject_counts to the
# line's photo-eye-to-ejector distance when commissioning, so a board that restarts while the
# gateway is away still ejects at the right place (every item, as none gets a verdict).
DEFAULT_CONFIG = protocol.Config(
    debounce_ms=5, eject_counts=3000, trigger_us=200, strobe_us=100, reject_us=20000, heartbeat_ms=500
)

PIO_FREQ = 1_000_000  # one state-machine cycle per microsecond


# Holds its pin high for (n + 2) cycles per width n it is given. The assembler names are
# defined by rp2.asm_pio while it builds the program.
@rp2.asm_pio(set_init=rp2.PIO.OUT_LOW)
def _pulse_program():
    pull(block)  # noqa: F821
    mov(x, osr)  # noqa: F821
    set(pins, 1)  # noqa: F821
    label("high")  # noqa: F821
    jmp(x_dec, "high")  # noqa: F821
    set(pins, 0)  # noqa: F821


class PioPulse:
    """A pulse output timed by a PIO state machine: exact to the microsecond, no timer and no
    wait in the ISR that fires it. Pulses fired while one is running follow it (4 queued)."""

    def __init__(self, state_machine, pin):
        self._sm = rp2.StateMachine(state_machine, _pulse_program, freq=PIO_FREQ, set_base=Pin(pin, Pin.OUT))
        self._sm.active(1)

    def fire(self, width_us):  # ISR-safe: put() of a small int
        self._sm.put(width_us - 2)


class Board:
    def __init__(self):
        micropython.alloc_emergency_exception_buf(100)  # so an ISR exception can be reported
        self.uart = UART(UART_ID, baudrate=BAUDRATE, tx=Pin(UART_TX_PIN), rx=Pin(UART_RX_PIN), txbuf=1024, rxbuf=1024)
        # An unplugged photo-eye reads low (no pack); the encoder's line receiver drives A and B.
        self.photo_eye = Pin(PHOTO_EYE_PIN, Pin.IN, Pin.PULL_DOWN)
        self.encoder_a = Pin(ENCODER_A_PIN, Pin.IN)
        self.encoder_b = Pin(ENCODER_B_PIN, Pin.IN)
        now = time.ticks_us()
        self.line = lineio.Line(
            DEFAULT_CONFIG,
            PioPulse(0, TRIGGER_PIN),
            PioPulse(1, STROBE_PIN),
            PioPulse(2, REJECT_PIN),
            self.photo_eye.value(),
            self.encoder_a.value(),
            self.encoder_b.value(),
            now,
        )
        self.link = lineio.Link(self.line, now)
        # Hard IRQs: the encoder must not wait for the main loop (a soft IRQ could lose edges).
        both = Pin.IRQ_RISING | Pin.IRQ_FALLING
        self.photo_eye.irq(self._on_photo_eye, both, hard=True)
        self.encoder_a.irq(self._on_encoder, both, hard=True)
        self.encoder_b.irq(self._on_encoder, both, hard=True)

    def _on_photo_eye(self, pin):  # hard IRQ
        self.line.photo_eye(pin.value(), time.ticks_us())

    def _on_encoder(self, pin):  # hard IRQ
        self.line.encoder(self.encoder_a.value(), self.encoder_b.value(), time.ticks_us())

    def poll(self):
        """One pass of the main loop: received bytes handled, events and heartbeats sent."""
        waiting = self.uart.any()
        received = self.uart.read(waiting) if waiting else None
        out = self.link.poll(time.ticks_us(), received or b"")
        if out:
            self.uart.write(out)

    def run(self):
        # No watchdog: if this loop hung, the ISRs would go on ejecting every item without a
        # verdict, which is safe; a reset would lose the items on the belt.
        while True:
            self.poll()


if __name__ == "__main__":
    Board().run()
