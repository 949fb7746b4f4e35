"""The door: a relay for the strike, green/red LEDs, an optional buzzer and request-to-exit button.

Fail-secure by construction: the relay is created released, released on ``lock()``, ``fault()``
and ``close()``, and only energised by ``grant()`` for a bounded time (a timer releases it).
While a fault is raised, ``grant()`` refuses: free egress must not depend on this software
(fail-secure strikes open mechanically from the inside), so refusing is the safe default.

The GPIO pin factory is passed in (gpiozero's ``MockFactory`` in tests); real factories are
imported lazily so this module loads on any machine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from gpiozero import LED, Button, Buzzer, OutputDevice

from gate.errors import ConfigError
from gate.settings import DoorSettings

log = logging.getLogger(__name__)

DoorState = Literal["locked", "unlocked", "fault"]

FAULT_BLINK_S = 0.5
DENY_BEEP_S = 0.15


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory called ``name`` in settings (imported only when chosen)."""
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "native":
            from gpiozero.pins.native import NativeFactory

            return NativeFactory()
    except ImportError as exc:
        raise ConfigError(f"door.pin_factory = {name!r} needs a library that is not installed ({exc}); install maskgate[pi]") from exc
    raise ConfigError(f"door.pin_factory: unknown pin factory {name!r}")


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
        #: Called (from a gpiozero thread) when the exit button is pressed. The daemon sets it to
        #: record an ``exit_button`` event before granting; unset, the button grants directly.
        self.on_exit_request: Callable[[], None] | None = None
        self._devices: list[Any] = []
        try:
            self._relay = self._add(OutputDevice(settings.relay_pin, active_high=settings.relay_active_high, initial_value=False, pin_factory=self._factory))
            self._green = self._add(LED(settings.green_led_pin, pin_factory=self._factory)) if settings.green_led_pin else None
            self._red = self._add(LED(settings.red_led_pin, pin_factory=self._factory)) if settings.red_led_pin else None
            self._buzzer = self._add(Buzzer(settings.buzzer_pin, pin_factory=self._factory)) if settings.buzzer_pin else None
            self._button = self._add(Button(settings.exit_button_pin, pin_factory=self._factory)) if settings.exit_button_pin else None
        except Exception as exc:
            self.close()
            raise ConfigError(f"door: cannot set up the GPIO pins ({type(exc).__name__}: {exc})") from exc
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

    # -- actions -----------------------------------------------------------------------------

    def grant(self, seconds: float | None = None) -> bool:
        """Energise the relay for ``seconds`` (default ``unlock_s``); a new grant extends it.

        Returns False (and leaves the door locked) while a fault is raised or after close.
        """
        duration = self._settings.unlock_s if seconds is None else float(seconds)
        if duration <= 0:
            raise ValueError(f"unlock duration must be positive, got {duration}")
        with self._lock:
            if self._closed or self._fault_reason is not None:
                log.warning("grant refused: door is %s", "closed" if self._closed else f"in fault ({self._fault_reason})")
                return False
            self._unlocked_until = max(self._unlocked_until, time.monotonic() + duration)
            self._relay.on()
            if self._green:
                self._green.on()
            self._end_deny_indication()
            self._relock_timer = self._restart_timer(self._relock_timer, self._unlocked_until - time.monotonic(), self._relock)
        log.info("door unlocked for %.1f s", duration)
        return True

    def deny(self) -> None:
        """Red LED and buzzer for ``deny_indication_s``. Never touches the relay."""
        with self._lock:
            if self._closed or self._fault_reason is not None:
                return
            if self._red:
                self._red.on()
            if self._buzzer:
                beeps = max(1, round(self._settings.deny_indication_s / (2 * DENY_BEEP_S)))
                self._buzzer.beep(on_time=DENY_BEEP_S, off_time=DENY_BEEP_S, n=min(beeps, 3), background=True)
            self._deny_timer = self._restart_timer(self._deny_timer, self._settings.deny_indication_s, self._end_deny_indication)

    def lock(self) -> None:
        """Release the relay now (cancels a running grant)."""
        with self._lock:
            self._release()

    def fault(self, reason: str) -> None:
        """Release the relay and blink red until :meth:`clear_fault`; grants are refused meanwhile."""
        with self._lock:
            if self._closed:
                return
            if self._fault_reason is None:
                log.error("door fault: %s (relay released, grants refused)", reason)
            self._fault_reason = reason
            self._release()
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
        log.info("door locked again")

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
        log.info("exit button pressed")
        hook = self.on_exit_request
        if hook is not None:
            hook()
        else:
            self.grant()
