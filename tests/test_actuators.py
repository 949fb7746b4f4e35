"""Door behaviour on gpiozero's MockFactory: pin levels over time, fail-secure in every path."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door
from gate.errors import ConfigError
from gate.settings import DoorSettings

RELAY, GREEN, RED, BUZZER, BUTTON = 17, 27, 22, 23, 24


def settings(**overrides: object) -> DoorSettings:
    base = dict(relay_pin=str(RELAY), green_led_pin=str(GREEN), red_led_pin=str(RED), buzzer_pin=str(BUZZER),
                exit_button_pin=str(BUTTON), unlock_s=0.2, deny_indication_s=0.2)
    return DoorSettings(**{**base, **overrides})


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory()


def wait_for(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_relay_starts_released(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        assert factory.pin(RELAY).state is False
        assert door.state == "locked"


def test_grant_energises_relay_then_releases(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        assert door.grant() is True
        assert factory.pin(RELAY).state is True
        assert factory.pin(GREEN).state is True
        assert factory.pin(RED).state is False
        assert door.state == "unlocked"
        wait_for(lambda: factory.pin(RELAY).state is False)
        assert factory.pin(GREEN).state is False
        assert door.state == "locked"
        factory.pin(RELAY).assert_states([False, True, False])


def test_new_grant_extends_the_unlock(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        door.grant(0.5)
        door.grant(30)
        time.sleep(0.8)  # past the first grant's end
        assert factory.pin(RELAY).state is True
        factory.pin(RELAY).assert_states([False, True])  # never dropped in between


def test_shorter_grant_never_cuts_a_running_one(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        door.grant(30)
        door.grant(0.05)
        time.sleep(0.3)
        assert factory.pin(RELAY).state is True


def test_active_low_relay_inverts_the_pin(factory: MockFactory) -> None:
    with Door(settings(relay_active_high=False), pin_factory=factory) as door:
        assert factory.pin(RELAY).state is True  # released = high on an active-low board
        door.grant()
        assert factory.pin(RELAY).state is False
        wait_for(lambda: factory.pin(RELAY).state is True)
    assert factory.pin(RELAY).state is True


def test_deny_never_touches_the_relay(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        door.deny()
        assert factory.pin(RED).state is True
        wait_for(lambda: factory.pin(RED).state is False)
        factory.pin(RELAY).assert_states([False])
        assert any(change.state for change in factory.pin(BUZZER).states), "buzzer never sounded"


def test_fault_releases_a_held_relay_and_refuses_grants(factory: MockFactory) -> None:
    with Door(settings(unlock_s=30), pin_factory=factory) as door:
        door.grant()
        assert factory.pin(RELAY).state is True
        door.fault("camera lost")
        assert factory.pin(RELAY).state is False
        assert door.state == "fault"
        assert door.grant() is False
        assert factory.pin(RELAY).state is False
        wait_for(lambda: len(factory.pin(RED).states) >= 4)  # red is blinking
        door.clear_fault()
        assert factory.pin(RED).state is False
        assert door.grant() is True


def test_lock_releases_now(factory: MockFactory) -> None:
    with Door(settings(unlock_s=30), pin_factory=factory) as door:
        door.grant()
        door.lock()
        assert factory.pin(RELAY).state is False
        assert door.state == "locked"


def test_close_releases_and_is_idempotent(factory: MockFactory) -> None:
    door = Door(settings(unlock_s=30), pin_factory=factory)
    door.grant()
    door.close()
    assert factory.pin(RELAY).state is False
    door.close()
    assert door.grant() is False


def test_exit_button_calls_the_hook(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        presses: list[bool] = []
        door.on_exit_request = lambda: presses.append(True)
        factory.pin(BUTTON).drive_low()
        wait_for(lambda: presses == [True])
        assert factory.pin(RELAY).state is False  # the hook decides; nothing granted by itself


def test_exit_button_without_hook_grants(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory):
        factory.pin(BUTTON).drive_low()
        wait_for(lambda: factory.pin(RELAY).state is True)


def test_pin_conflict_is_a_config_error(factory: MockFactory) -> None:
    with pytest.raises(ConfigError, match="GPIO pins"):
        Door(settings(green_led_pin=str(RELAY)), pin_factory=factory)
    # the relay created before the failure was released and freed
    with Door(settings(), pin_factory=factory):
        pass
