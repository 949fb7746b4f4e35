"""Shared fixtures: the tiny trained model and run folder used by the conversion-side tests."""

pytest_plugins = ["tests.fixtures_models"]
