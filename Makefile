# Developer shortcuts; each target is one command you could also type yourself.
UV ?= uv

.PHONY: help setup demo test lint format compile bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## install the locked environment (all extras, dev tools)
	$(UV) sync --locked --all-extras

demo: ## run the whole pipeline locally on the offline demo dataset
	$(UV) run petseg run --local --preset demo

test: ## the full suite, as CI runs it (lint and format checks included)
	$(UV) run --locked pytest

lint: ## ruff lint and format check
	$(UV) run ruff check . && $(UV) run ruff format --check .

format: ## apply ruff fixes and formatting
	$(UV) run ruff check --fix . && $(UV) run ruff format .

compile: ## compile the tutorial preset for Vertex AI to petseg-tutorial.pipeline.yaml
	$(UV) run petseg compile --preset tutorial --target vertex

bench: ## print ingest and training throughput against their baselines
	$(UV) run python benchmarks/bench_ingest.py && $(UV) run python benchmarks/bench_train.py
