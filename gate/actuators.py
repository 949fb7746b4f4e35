"""The door: a relay for the strike, green/red LEDs, an optional buzzer and request-to-exit button.

Fail-secure by construction: the relay is created released, released on ``deny()``, ``lock()``,
``fault()`` and ``close()``, and only energised by ``grant()`` for a bounded time (a timer
releases it). A deny cancels a running grant: an unmasked face settled while the door is open
re-locks it. While a fault is raised, ``grant()`` refuses: free egress must not depend on this
software (fail-secure strikes open mechanically from the inside), so refusing is the safe default.

Every change of :attr:`Door.state` (relay energised, released, fault raised or cleared), whoever
caused it (a decision, the relock timer, a fault, shutdown), is reported to ``on_change`` under the
door's lock, so reports arrive in the order the changes happened: dashboards see a relock at once.

``grant()`` and ``deny()`` take a ``record`` callback, called under the door's lock with what is
about to happen (the refusal's reason, or whether the relay is released) *before* the relay moves:
the caller commits its event durably first, and no fault or close can slip in between.

The process can die without any of this running (SIGKILL, a watchdog abort, a crash in native
code), and a Raspberry Pi keeps a GPIO line at its last level: :func:`release_relay` is what
``gate-cli door release`` (the unit's ``ExecStopPost=``) runs to drive the relay pin inactive.

The GPIO pin factory is passed in (gpiozero's ``MockFactory`` in tests); real factories are
imported lazily so this module loads on any machine.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from gpiozero import LED, Button, Buzzer, OutputDevice

from gate.errors import ConfigError, DeviceBusyError, MaskgateError
from gate.settings import DoorSettings, RelaySettings

log = logging.getLogger(__name__)

DoorState = Literal["locked", "unlocked", "fault"]
#: Why the door refused a grant (it becomes ``<source>_refused_<refusal>`` in the event).
Refusal = Literal["fault", "closed"]

FAULT_BLINK_S = 0.5
DENY_BEEP_S = 0.15


def _mock_factory() -> Any:
    from gpiozero.pins.mock import MockFactory

    return MockFactory()


def _lgpio_factory() -> Any:
    from gpiozero.pins.lgpio import LGPIOFactory  # imports lgpio, which opens its notification pipe at once

    return LGPIOFactory()


#: gpiozero's pin factories by their name in settings, each imported only when chosen.
PIN_FACTORIES: Mapping[str, Callable[[], Any]] = {"mock": _mock_factory, "lgpio": _lgpio_factory}


def gpio_start_error(what: str, exc: BaseException) -> MaskgateError:
    """A GPIO library's start-up failure as one line: DeviceBusyError for a line another process
    holds (it may let go: retried), ConfigError (exit 78) for what only a person can fix."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, ImportError):
        return ConfigError(f"{what}: the GPIO library cannot be imported ({detail}); on Raspberry Pi OS: sudo apt install python3-lgpio "
                           "(systemd/install-pi.sh installs it and makes the venv see it)")
    if ".lgd-nfy" in str(getattr(exc, "filename", "") or ""):  # lgpio's notification pipe, made in $LG_WD or the working folder
        folder = os.environ.get("LG_WD") or os.getcwd()
        return ConfigError(f"{what}: lgpio cannot create its notification pipe in {folder} ({detail}); run from a folder this user "
                           "can write or set LG_WD to one (the systemd unit sets LG_WD=/run/maskgate)")
    message = str(exc).lower()
    if "busy" in message or getattr(exc, "errno", None) == errno.EBUSY:
        return DeviceBusyError(f"{what}: GPIO busy ({detail}): another process holds the pin (is the gate already running?)")
    if isinstance(exc, PermissionError) or "gpiochip" in message:
        return ConfigError(f"{what}: cannot open the GPIO chip ({detail}); on a Raspberry Pi the user must be in the gpio group "
                           "(the systemd unit adds it); elsewhere use door.pin_factory = \"mock\"")
    return ConfigError(f"{what}: {detail}")


def make_pin_factory(name: str, *, factories: Mapping[str, Callable[[], Any]] = PIN_FACTORIES) -> Any:
    """The gpiozero pin factory called ``name`` in settings; its start-up failure is one line (see :func:`gpio_start_error`)."""
    if name not in factories:
        raise ConfigError(f"door.pin_factory: unknown pin factory {name!r}")
    try:
        return factories[name]()
    except Exception as exc:
        raise gpio_start_error(f'door.pin_factory = "{name}"', exc) from exc


class Door:
    """Drives the door hardware; every method is safe to call from any thread."""

    def __init__(self, settings: DoorSettings, *, pin_factory: Any = None) -> None:
        self._settings = settings
        self._factory = pin_factory if pin_factory is not None else make_pin_factory(settings.pin_factory)
        self._lock = threading.RLock()
        self._relock_timer: threading.Timer | None = None
        self._deny_timer: threading.Timer | None = None
        self._unlocked_until = 0.0
        self._fault_reason: str | None = None
        self._closed = False
        self._last_press = float("-inf")
        #: Called (from a gpiozero thread) when the exit button is pressed. The daemon sets it to
        #: record an ``exit_button`` event before granting; unset, the button grants directly.
        self.on_exit_request: Callable[[], None] | None = None
        #: Called with ``(state, fault_reason)`` on every change of :attr:`state`, under the door's
        #: lock (keep it short, and never call back into the door from another thread while holding
        #: a lock of yours). The daemon publishes the dashboards' state from it.
        self.on_change: Callable[[DoorState, str | None], None] | None = None
        self._reported: DoorState = "locked"
        self._devices: list[Any] = []
        try:
            self._relay = self._add(OutputDevice(settings.relay_pin, active_high=settings.relay_active_high, initial_value=False, pin_factory=self._factory))
            self._green = self._add(LED(settings.green_led_pin, pin_factory=self._factory)) if settings.green_led_pin else None
            self._red = self._add(LED(settings.red_led_pin, pin_factory=self._factory)) if settings.red_led_pin else None
            self._buzzer = self._add(Buzzer(settings.buzzer_pin, pin_factory=self._factory)) if settings.buzzer_pin else None
            self._button = (
                self._add(Button(settings.exit_button_pin, bounce_time=settings.exit_button_bounce_s, pin_factory=self._factory))
                if settings.exit_button_pin
                else None
            )
        except Exception as exc:
            self.close()
            raise gpio_start_error("door: cannot set up the GPIO pins", exc) from exc
        if self._button is not None:
            self._button.when_pressed = self._exit_pressed
        log.info("door ready: relay on pin %s (active %s), fail-secure (released)", settings.relay_pin, "high" if settings.relay_active_high else "low")

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> DoorState:
        with self._lock:
            if self._fault_reason is not None:
                return "fault"
            return "unlocked" if self._relay.value else "locked"

    @property
    def fault_reason(self) -> str | None:
        return self._fault_reason

    @property
    def unlock_s(self) -> float:
        """How long a grant without its own duration keeps the relay energised."""
        return self._settings.unlock_s

    # -- actions -----------------------------------------------------------------------------

    def refusal(self) -> Refusal | None:
        """Why a grant would be refused now (None: it would not be)."""
        with self._lock:
            return "closed" if self._closed else "fault" if self._fault_reason is not None else None

    def grant(self, seconds: float | None = None, *, record: Callable[[Refusal | None], None] | None = None) -> bool:
        """Energise the relay for ``seconds`` (default ``unlock_s``); a new grant extends it.

        Returns whether the relay is energised by this call: False (door left locked) while a
        fault is raised or after close. ``record(refusal)`` runs first, under the door's lock; if it
        raises, the relay does not move.
        """
        duration = self._settings.unlock_s if seconds is None else float(seconds)
        if duration <= 0:
            raise ValueError(f"unlock duration must be positive, got {duration}")
        with self._lock:
            refusal = self.refusal()
            if record is not None:
                record(refusal)
            if refusal is not None:
                log.warning("grant refused: door is %s", "closed" if self._closed else f"in fault ({self._fault_reason})")
                return False
            self._unlocked_until = max(self._unlocked_until, time.monotonic() + duration)
            self._relay.on()
            if self._green:
                self._green.on()
            self._end_deny_indication()
            self._relock_timer = self._restart_timer(self._relock_timer, self._unlocked_until - time.monotonic(), self._relock)
            self._report_change()
        log.info("door unlocked for %.1f s", duration)
        return True

    def deny(self, *, record: Callable[[bool], None] | None = None) -> bool:
        """Release the relay at once (cancelling a running grant), then red LED and buzzer for
        ``deny_indication_s``. Returns whether the relay was energised, i.e. this deny re-locked
        the door; ``record(relocks)`` runs first, under the door's lock (if it raises, the relay is
        released all the same)."""
        with self._lock:
            relocks = not self._closed and bool(self._relay.value)
            try:
                if record is not None:
                    record(relocks)
            finally:  # a deny locks even if its record fails: a full disk must not hold the door open
                if not self._closed:
                    self._release()
                    self._report_change()
            if self._closed:
                return False
            if relocks:
                log.warning("deny: door locked again before the end of its grant")
            if self._fault_reason is not None:
                return relocks  # the red LED is blinking the fault
            if self._red:
                self._red.on()
            if self._buzzer:
                beeps = max(1, round(self._settings.deny_indication_s / (2 * DENY_BEEP_S)))
                self._buzzer.beep(on_time=DENY_BEEP_S, off_time=DENY_BEEP_S, n=min(beeps, 3), background=True)
            self._deny_timer = self._restart_timer(self._deny_timer, self._settings.deny_indication_s, self._end_deny_indication)
        return relocks

    def lock(self) -> None:
        """Release the relay now (cancels a running grant)."""
        with self._lock:
            if self._closed:
                return
            self._release()
            self._report_change()

    def fault(self, reason: str) -> None:
        """Release the relay and blink red until :meth:`clear_fault`; grants are refused meanwhile."""
        with self._lock:
            if self._closed:
                return
            if self._fault_reason is None:
                log.error("door fault: %s (relay released, grants refused)", reason)
            self._fault_reason = reason
            self._release()
            self._report_change()
            self._end_deny_indication()
            if self._red:
                self._red.blink(on_time=FAULT_BLINK_S, off_time=FAULT_BLINK_S, background=True)

    def clear_fault(self) -> None:
        with self._lock:
            if self._fault_reason is None or self._closed:
                return
            log.info("door fault cleared (was: %s)", self._fault_reason)
            self._fault_reason = None
            if self._red:
                self._red.off()
            self._report_change()

    def close(self) -> None:
        """Release the relay and free the pins. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for timer in (self._relock_timer, self._deny_timer):
                if timer is not None:
                    timer.cancel()
            if self._devices:
                self._relay.off()
                self._report_change()
            for device in reversed(self._devices):
                device.close()

    def __enter__(self) -> Door:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _release(self) -> None:
        if self._relock_timer is not None:
            self._relock_timer.cancel()
            self._relock_timer = None
        self._unlocked_until = 0.0
        self._relay.off()
        if self._green:
            self._green.off()

    def _relock(self) -> None:
        with self._lock:
            if self._closed or time.monotonic() < self._unlocked_until - 0.001:
                return  # closed, or extended by a later grant whose own timer will fire
            self._release()
            self._report_change()
        log.info("door locked again")

    def _report_change(self) -> None:
        """Tell ``on_change`` if :attr:`state` differs from what it was last told (caller holds the lock)."""
        state = self.state
        if state == self._reported:
            return
        self._reported = state
        hook = self.on_change
        if hook is None:
            return
        try:
            hook(state, self._fault_reason)
        except Exception:  # a dashboard must never stop the relay's own logic
            log.exception("door state hook failed")

    def _end_deny_indication(self) -> None:
        with self._lock:
            if self._deny_timer is not None:
                self._deny_timer.cancel()
                self._deny_timer = None
            if self._closed:
                return
            if self._buzzer:
                self._buzzer.off()
            if self._red and self._fault_reason is None:
                self._red.off()

    def _restart_timer(self, old: threading.Timer | None, delay: float, action: Callable[[], None]) -> threading.Timer:
        if old is not None:
            old.cancel()
        timer = threading.Timer(max(delay, 0.0), action)
        timer.daemon = True
        timer.start()
        return timer

    def _exit_pressed(self) -> None:
        """A press within ``exit_button_min_interval_s`` of the last accepted one is ignored: a
        bouncing contact or a held-down hand is one request, not a stream of grants and events."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_press < self._settings.exit_button_min_interval_s:
                log.debug("exit button pressed again within %.1f s: ignored", self._settings.exit_button_min_interval_s)
                return
            self._last_press = now
        log.info("exit button pressed")
        hook = self.on_exit_request
        if hook is not None:
            hook()
        else:
            self.grant()


def open_door(settings: DoorSettings, *, make_factory: Callable[[], Any] | None = None, attempts: int = 5,
              first_wait_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> Door:
    """The daemon's Door: while another process holds its pins (GPIO busy) it waits and tries again
    (1, 2, 4, 8 s), then gives up with DeviceBusyError (exit 1: systemd restarts the unit); any
    other start-up failure raises at once (ConfigError, exit 78).

    Each try gets a fresh pin factory (``make_factory``, default the one settings name): gpiozero
    keeps a failed claim's reservation in the factory that saw it.
    """
    make = make_factory or (lambda: make_pin_factory(settings.pin_factory))
    wait = first_wait_s
    for attempt in range(1, attempts):
        factory = make()
        try:
            return Door(settings, pin_factory=factory)
        except DeviceBusyError as exc:
            factory.close()
            log.warning("%s; trying again in %.0f s (attempt %d of %d)", exc, wait, attempt + 1, attempts)
            sleep(wait)
            wait *= 2
    return Door(settings, pin_factory=make())  # the last try: its DeviceBusyError is the caller's


def release_relay(settings: RelaySettings, *, pin_factory: Any = None) -> str:
    """Drive the relay pin to its inactive level and free it; returns what happened, in one line.

    For ``gate-cli door release`` after the daemon is gone (however it died): it touches only
    the relay pin, so it fails (GPIO busy) rather than fight a daemon that is still running. On
    mock pins it says that nothing physical moved, so nobody takes it for a released strike.
    """
    factory = pin_factory if pin_factory is not None else make_pin_factory(settings.pin_factory)
    try:
        relay = OutputDevice(settings.relay_pin, active_high=settings.relay_active_high, initial_value=False, pin_factory=factory)
    except Exception as exc:  # busy (the daemon still holds it), no permission, no such pin
        raise gpio_start_error(f"door: cannot drive relay pin {settings.relay_pin}", exc) from exc
    try:
        relay.off()
        level = "high" if relay.pin.state else "low"
    finally:
        relay.close()
    polarity = f"relay active {'high' if settings.relay_active_high else 'low'}"
    if settings.pin_factory == "mock":
        return f'mock pins: nothing physical moved (door.pin_factory = "mock"; relay pin {settings.relay_pin} set {level}, {polarity})'
    return f"relay on pin {settings.relay_pin} released: pin {level} ({polarity})"
