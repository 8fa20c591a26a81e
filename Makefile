# `make test` is the one command for CI and developers: it installs what is missing, then lints,
# type-checks and runs every test against real servers.
.PHONY: setup test lint demo

setup:
	bash scripts/setup.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

test: lint
	.venv/bin/pytest

demo: setup
	.venv/bin/tryggheim demo
