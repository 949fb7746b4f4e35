"""Door behaviour on gpiozero's MockFactory: pin levels over time, fail-secure in every path."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockFactory

from gate.actuators import Door, release_relay
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


def levels(factory: MockFactory, pin: int) -> list[bool]:
    """The pin's whole level history (MockPin.assert_states only compares a prefix)."""
    return [change.state for change in factory.pin(pin).states]


def test_deny_on_a_locked_door_signals_and_leaves_the_relay_alone(factory: MockFactory) -> None:
    with Door(settings(), pin_factory=factory) as door:
        assert door.deny() is False  # nothing to re-lock
        assert factory.pin(RED).state is True
        wait_for(lambda: factory.pin(RED).state is False)
        assert levels(factory, RELAY) == [False]
        assert any(change.state for change in factory.pin(BUZZER).states), "buzzer never sounded"


def test_deny_releases_a_running_grant_at_once(factory: MockFactory) -> None:
    with Door(settings(unlock_s=30), pin_factory=factory) as door:
        door.grant()
        assert door.deny() is True  # it re-locked the door
        assert levels(factory, RELAY) == [False, True, False] and door.state == "locked"
        assert factory.pin(GREEN).state is False and factory.pin(RED).state is True
        time.sleep(0.3)
        assert levels(factory, RELAY) == [False, True, False]  # the cancelled grant's timer does not fire later


def test_record_comes_before_the_relay_and_a_failed_record_leaves_the_door_locked(factory: MockFactory) -> None:
    with Door(settings(unlock_s=30), pin_factory=factory) as door:
        seen: list[tuple[str | None, bool]] = []
        assert door.grant(record=lambda refusal: seen.append((refusal, factory.pin(RELAY).state))) is True
        assert seen == [(None, False)] and factory.pin(RELAY).state is True
        door.lock()

        def disk_full(refusal: str | None) -> None:
            raise OSError("disk full")

        with pytest.raises(OSError):
            door.grant(record=disk_full)
        assert levels(factory, RELAY) == [False, True, False]
        relocks: list[bool] = []
        door.grant()
        door.deny(record=relocks.append)
        assert relocks == [True]
        door.grant()
        with pytest.raises(OSError):
            door.deny(record=disk_full)
        assert factory.pin(RELAY).state is False  # a deny locks even when its record fails


def test_a_refused_grant_says_why(factory: MockFactory) -> None:
    door = Door(settings(), pin_factory=factory)
    refusals: list[str | None] = []
    door.fault("camera lost")
    assert door.grant(record=refusals.append) is False
    door.close()
    assert door.grant(record=refusals.append) is False
    assert refusals == ["fault", "closed"] and levels(factory, RELAY) == [False]


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


def test_exit_button_is_debounced(factory: MockFactory) -> None:
    with Door(settings(exit_button_bounce_s=0.08, exit_button_min_interval_s=0.5), pin_factory=factory) as door:
        assert factory.pin(BUTTON).bounce == 0.08  # gpiozero's own debounce on real pins (MockPin only stores it)
        presses: list[float] = []
        door.on_exit_request = lambda: presses.append(time.monotonic())
        for _ in range(4):  # a bouncing contact, or a hand pressing again and again
            factory.pin(BUTTON).drive_low()
            factory.pin(BUTTON).drive_high()
        time.sleep(0.6)
        factory.pin(BUTTON).drive_low()  # a new press after the interval counts
        wait_for(lambda: len(presses) == 2)
        time.sleep(0.1)
        assert len(presses) == 2 and presses[1] - presses[0] >= 0.5


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


@pytest.mark.parametrize("active_high", [True, False])
def test_release_relay_drives_a_pin_left_active_to_inactive(factory: MockFactory, active_high: bool) -> None:
    """What `gate-cli door release` does after the daemon died: the kernel kept the line active."""
    pin = factory.pin(RELAY)
    (pin.drive_high if active_high else pin.drive_low)()  # as a killed process left it: relay energised
    said = release_relay(settings(pin_factory="lgpio", relay_active_high=active_high), pin_factory=factory)
    inactive = "high" if not active_high else "low"
    assert said == f"relay on pin {RELAY} released: pin {inactive} (relay active {'high' if active_high else 'low'})"
    assert pin.state is (not active_high)  # inactive: low on an active-high board, high on an active-low one
    assert levels(factory, RELAY)[-1] is (not active_high)


# -- GPIO library start-up failures, faked at the library boundary -----------------------------


class error(Exception):  # noqa: N801 - named like lgpio's own exception class
    """What lgpio raises (``lgpio.error``), with lgpio's messages."""


def failing(exc: BaseException):
    def make() -> object:
        raise exc

    return make


@pytest.mark.parametrize(
    ("exc", "fragment"),
    [
        # `import lgpio` in a folder it cannot write: its notification pipe (gpiozero#1106)
        (FileNotFoundError(2, "No such file or directory", ".lgd-nfy-3"), "lgpio cannot create its notification pipe in"),
        (ModuleNotFoundError("No module named 'lgpio'"), "sudo apt install python3-lgpio"),
        (error("can not open gpiochip"), "the user must be in the gpio group"),
        (PermissionError(13, "Permission denied", "/dev/gpiochip0"), "the user must be in the gpio group"),
    ],
)
def test_a_gpio_library_that_cannot_start_is_one_config_error_line(exc: BaseException, fragment: str) -> None:
    from gate.actuators import make_pin_factory

    with pytest.raises(ConfigError) as caught:
        make_pin_factory("lgpio", factories={"lgpio": failing(exc)})
    message = str(caught.value)
    assert message.startswith('door.pin_factory = "lgpio": ') and fragment in message and "\n" not in message


def test_the_notification_pipe_error_names_the_folder_lgpio_used(tmp_path, monkeypatch) -> None:
    from gate.actuators import make_pin_factory

    monkeypatch.setenv("LG_WD", str(tmp_path))  # the environment is the input here, as under the unit
    with pytest.raises(ConfigError, match=f"pipe in {tmp_path} "):
        make_pin_factory("lgpio", factories={"lgpio": failing(FileNotFoundError(2, "No such file or directory", ".lgd-nfy-3"))})


def busy_factories(busy_for: int) -> tuple[list[MockFactory], object]:
    """Pin factories whose pins another process holds for the first ``busy_for`` claims (all
    factories together, as one process holding a line); returns the factories made and the maker."""
    made: list[MockFactory] = []
    claims = [0]

    class BusyFactory(MockFactory):
        def pin(self, spec, **kwargs):
            claims[0] += 1
            if claims[0] <= busy_for:
                raise error("GPIO busy")
            return super().pin(spec, **kwargs)

    def make() -> MockFactory:
        made.append(BusyFactory())
        return made[-1]

    return made, make


def test_open_door_waits_with_backoff_while_the_relay_pin_is_busy() -> None:
    from gate.actuators import open_door

    waits: list[float] = []
    made, make = busy_factories(busy_for=2)
    with open_door(settings(), make_factory=make, sleep=waits.append) as door:
        assert door.state == "locked"
        assert door.grant(0.5) and levels(made[-1], RELAY)[-1] is True  # the third factory drives the relay
    assert waits == [1.0, 2.0] and len(made) == 3


def test_open_door_gives_up_on_a_pin_that_stays_busy_without_config_error() -> None:
    """Busy may come back: not exit 78 (systemd would stop restarting), a retryable error instead."""
    from gate.actuators import open_door
    from gate.errors import DeviceBusyError

    waits: list[float] = []
    with pytest.raises(DeviceBusyError, match="GPIO busy") as caught:
        open_door(settings(), make_factory=busy_factories(busy_for=99)[1], attempts=3, sleep=waits.append)
    assert waits == [1.0, 2.0] and not isinstance(caught.value, ConfigError)


def test_open_door_does_not_retry_what_only_a_person_can_fix() -> None:
    from gate.actuators import open_door

    waits: list[float] = []
    with pytest.raises(ConfigError, match="cannot set up the GPIO pins"):
        open_door(settings(relay_pin="GPIO99"), make_factory=MockFactory, sleep=waits.append)
    assert waits == []


def test_release_relay_on_mock_pins_says_that_nothing_physical_moved(factory: MockFactory) -> None:
    pin = factory.pin(RELAY)
    pin.drive_high()
    said = release_relay(settings(pin_factory="mock"), pin_factory=factory)
    assert said.startswith("mock pins: nothing physical moved") and "released" not in said
    assert pin.state is False  # the mock pin was driven all the same
