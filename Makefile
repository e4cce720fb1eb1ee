# herd's developer commands. Every target works on a fresh clone: what the
# tests need and the machine lacks is installed by scripts/test-deps.

GOLANGCI_LINT_VERSION := v2.15.0
TOOLS := $(CURDIR)/.tools/bin
GOLANGCI_LINT := $(TOOLS)/golangci-lint

# Every module of the workspace, the root first.
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)

FUZZTIME ?= 10s
BENCHCOUNT ?= 6
BENCHTIME ?= 1s

.PHONY: test lint bench fuzz test-deps tools

test: test-deps
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && go vet ./... && go test -race -count=1 ./...); \
	done

test-deps:
	@./scripts/test-deps

lint: $(GOLANGCI_LINT)
	@set -e; for m in $(MODULES); do \
		echo "== lint $$m"; \
		(cd $$m && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...); \
	done

tools: $(GOLANGCI_LINT)

$(GOLANGCI_LINT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

# bench runs every benchmark of every module BENCHCOUNT times, in a form
# benchstat reads: make bench > new.txt && benchstat new.txt
bench:
	@set -e; for m in $(MODULES); do \
		(cd $$m && go test -run '^$$' -bench . -benchmem -count=$(BENCHCOUNT) -benchtime=$(BENCHTIME) ./...); \
	done

# fuzz runs every fuzz target of every module for FUZZTIME.
fuzz:
	@./scripts/fuzz $(FUZZTIME) $(MODULES)
