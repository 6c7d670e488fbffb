#!/usr/bin/env bash
# `make package`: release build of every function as a Lambda zip with
# cargo-lambda (zig as the linker), and a table of binary and zip sizes.
# arm64 (what template.yaml deploys) when the aarch64 standard library is
# installed; otherwise x86_64, said loudly, so the build still proves itself.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_venv

if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
  arch_flag=--arm64; target=aarch64-unknown-linux-gnu
else
  arch_flag=--x86-64; target=x86_64-unknown-linux-gnu
  log "aarch64 standard library not installed: building x86_64 (rustup target add aarch64-unknown-linux-gnu for arm64)"
fi

cargo lambda build --release "$arch_flag" --output-format zip --workspace --quiet

printf '%-12s %12s %12s   (%s)\n' function binary zip "$target"
for f in $(function_names); do
  bin="target/$target/release/$f"
  zip="target/lambda/$f/bootstrap.zip"
  printf '%-12s %12s %12s\n' "$f" "$(stat -c %s "$bin" 2>/dev/null || echo ?)" "$(stat -c %s "$zip" 2>/dev/null || echo ?)"
done
