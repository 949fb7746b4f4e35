# The two commands of the README. Both install what they need first (idempotent).
.PHONY: demo test bootstrap

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	bash scripts/demo.sh

test: bootstrap
	.venv/bin/python -m pytest -q -ra
