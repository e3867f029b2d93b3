# GridPay — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
# name:package of every program built into bin/.
PROGRAMS := adminctl:./adminctl worker:./worker gateway:./gateway client:./client platform-sim:./sim/platform/cmd/platform-sim unionpay-sim:./sim/unionpay/cmd/unionpay-sim
PKGS := ./...

.PHONY: help deps tools build demo down status test unit integration bench vet fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install missing system packages (SoftHSM2, OpenSC, PostgreSQL 15 server)
	@bash scripts/deps.sh

tools: ## build the pinned Temporal CLI into .tools/bin (once)
	@bash scripts/tools.sh

build: ## build the programs into bin/
	@mkdir -p bin
	@for p in $(PROGRAMS); do $(GO) build -o bin/$${p%%:*} $${p#*:} || exit 1; done
	@echo "==> built: $(foreach p,$(PROGRAMS),bin/$(firstword $(subst :, ,$(p))))"

demo: deps tools build ## bring the development stack up (idempotent) and print where things run
	@bash scripts/stack.sh up

down: ## stop everything `make demo` started
	@bash scripts/stack.sh down

status: ## say what runs where
	@bash scripts/stack.sh status

vet: ## go vet, including integration-tagged files
	$(GO) vet -tags integration $(PKGS)

test: deps tools vet ## unit + integration tests against real SoftHSM2, PostgreSQL and Temporal
	$(GO) test -tags integration -count=1 -timeout 30m $(PKGS)

unit: ## unit tests only (no external components)
	$(GO) test -count=1 $(PKGS)

bench: deps tools ## benchmarks (figures printed, not asserted)
	$(GO) test -tags integration -run '^$$' -bench . -benchtime 3s $(PKGS)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: down ## stop the stack and delete its state (.run) and build output (bin)
	rm -rf .run bin
