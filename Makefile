# The two commands of the README. Both install what they need first (idempotent).
.PHONY: demo test bootstrap ha-check

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	bash scripts/demo.sh

test: bootstrap
	.venv/bin/python -m pytest -q -ra

# Not part of `test`: installs Home Assistant Core into its own venv (minutes, ~850 MB) first.
ha-check: bootstrap
	bash scripts/ha_check.sh
