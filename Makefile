# The two commands of the README, plus the checks they are built from.
.PHONY: run test bench lint package sam-api sam-test

## Serve every route on http://127.0.0.1:$${PORT:-3000} (Ctrl-C stops).
run:
	bash scripts/run-local.sh

## Install what is missing, start the database and local endpoints, run everything.
test:
	bash scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --features shared/failpoints -- -D warnings

## Cold start, memory, sizes, rename scaling, warm latency and bcrypt, with
## their budgets; writes BENCHMARKS.md (minutes; not part of test).
bench:
	bash scripts/bench.sh

## Release build of every function as a Lambda zip, with their sizes.
package:
	bash scripts/package.sh

## The functions as template.yaml wires them, under SAM CLI's local gateway
## in Docker, on http://127.0.0.1:$${PORT:-3000} (Ctrl-C stops everything).
sam-api:
	bash scripts/sam.sh api

## sam local invoke of every function with every fixture, and the contract
## through sam local start-api (needs Docker; not part of test).
sam-test:
	bash scripts/sam.sh test
