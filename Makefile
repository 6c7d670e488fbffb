# The two commands of the README, plus the checks they are built from.
.PHONY: run test bench lint package

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
