#!/usr/bin/env bash
# make test-install: installs the packed tarballs (target/npm/) the way users do and runs them.
# A Verdaccio registry on loopback takes the tarballs; fresh projects outside the repository
# install the package with npm (Node.js 20 and the newest Node.js), bun add and a Deno npm:
# import, with no Rust toolchain and no clone on PATH. A Deno process hosts a segment and a
# channel; Node 20, the newest Node, Bun, Deno, Deno importing the JSR files over http (given the
# library by SHARED_BUFFER_LIB) and a `bun build --compile` binary run from another folder each
# add 1 to the segment's counter and send one message on the channel; so do Bun and the compiled
# binary once a Worker of theirs has opened, used and closed the segment.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
: "${VERDACCIO:?}" "${NODE_NEWEST:?}" "${DENO:?}" "${BUN:?}"
# A path with a space in it, as a user's projects may have.
work="$(mktemp -d "/tmp/sb install.XXXXXX")"
registry_pid=""
jsr_server=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  [ -n "$jsr_server" ] && kill "$jsr_server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf 'test-install: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

# No package.json above the projects (Deno and npm would pick it up).
dir="$work"
while [ "$dir" != "/" ]; do
  [ -e "$dir/package.json" ] && die "$dir/package.json is above the test projects"
  dir="$(dirname "$dir")"
done

# Only the runtimes on PATH: no cargo, rustc or clone.
mkdir -p "$work/bin"
ln -s "$(command -v node)" "$work/bin/node"
ln -s "$(command -v npm)" "$work/bin/npm"
ln -s "$DENO" "$work/bin/deno"
ln -s "$BUN" "$work/bin/bun"
ln -s "$NODE_NEWEST" "$work/bin/node-newest"
export PATH="$work/bin:/usr/bin:/bin"
unset SHARED_BUFFER_LIB CARGO_HOME RUSTUP_HOME
export HOME="$work/home" npm_config_cache="$work/npm-cache" BUN_INSTALL_CACHE_DIR="$work/bun-cache" \
  DENO_DIR="$work/deno-dir" npm_config_update_notifier=false
mkdir -p "$HOME"
for tool in cargo rustc rustup; do
  command -v "$tool" >/dev/null && die "$tool is still on PATH"
done

# The registry.
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
url="http://127.0.0.1:$port"
mkdir -p "$work/registry"
cat > "$work/registry/config.yaml" <<YAML
storage: "$work/registry/storage"
uplinks: {}
packages:
  '**':
    access: \$all
    publish: \$all
log: { type: stdout, format: pretty, level: warn }
YAML
"$VERDACCIO" --config "$work/registry/config.yaml" --listen "127.0.0.1:$port" > "$work/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 600); do
  node -e "fetch('$url/-/ping').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" && break
  kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry/log"; die "the registry did not start"; }
  sleep 0.1
done
printf 'registry=%s\n//127.0.0.1:%s/:_authToken=dummy\n' "$url" "$port" > "$HOME/.npmrc"
for tarball in "$root"/target/npm/*.tgz; do
  npm publish --loglevel=error "$tarball" >/dev/null
done
version="$(node -p 'require(process.argv[1]).version' "$root/package.json")"
platform="$(node -p '`${process.platform}-${process.arch}` + (process.report.getReport().header.glibcVersionRuntime ? "-gnu" : "-musl")')"
say "published $(ls "$root"/target/npm/*.tgz | wc -l) tarballs of $version to $url"

# The projects.
project() {
  mkdir -p "$work/$1"
  cp "$root/packaging/install/peer.mjs" "$work/$1/"
  printf '{ "name": "%s", "private": true, "type": "module" }\n' "$1" > "$work/$1/package.json"
}
project node20
(cd "$work/node20" && npm install --no-audit --no-fund --loglevel=error "shared-buffer-ipc@$version")
# CommonJS require, and the error when the platform package was left out.
required="$(cd "$work/node20" && node -e 'console.log(require("shared-buffer-ipc").loadLibrary())')"
case "$required" in
  */node_modules/shared-buffer-ipc-"$platform"/*) ;;
  *) die "require() loaded $required" ;;
esac
project no-optional
(cd "$work/no-optional" && npm install --omit=optional --no-audit --no-fund --loglevel=error \
  "shared-buffer-ipc@$version" >/dev/null)
if (cd "$work/no-optional" && node peer.mjs send /sbi-none x > "$work/no-optional.out" 2>&1); then
  die "loading succeeded without the platform package"
fi
grep -q "comes in shared-buffer-ipc-$platform, an optional dependency" "$work/no-optional.out" \
  || { cat "$work/no-optional.out"; die "the error does not name the platform package"; }
project node-newest
(cd "$work/node-newest" && PATH="$(dirname "$(readlink -f "$NODE_NEWEST")"):$PATH" \
  npm install --no-audit --no-fund --loglevel=error "shared-buffer-ipc@$version")
project bun
printf '[install]\nregistry = "%s"\n' "$url" > "$work/bun/bunfig.toml"
(cd "$work/bun" && bun add "shared-buffer-ipc@$version" >/dev/null)
mkdir -p "$work/deno"
cp "$root/packaging/install/peer.mjs" "$work/deno/"
printf '{ "imports": { "shared-buffer-ipc": "npm:shared-buffer-ipc@%s" } }\n' "$version" \
  > "$work/deno/deno.json"
# Types: Deno checks a TypeScript user of the package against the types the package declares.
cat > "$work/deno/typed.ts" <<'TS'
import { type SegmentId, SharedMemory, SharedMemoryError } from "shared-buffer-ipc";
const id: SegmentId = { name: "/typed" };
export const open: (id: SegmentId) => SharedMemory = (x) => SharedMemory.open(x);
export const code = (e: unknown): string | undefined =>
  e instanceof SharedMemoryError ? e.code : undefined;
export const size = (shm: SharedMemory): number => shm.byteLength + ("name" in id ? id.name.length : 0);
TS
(cd "$work/deno" && NPM_CONFIG_REGISTRY="$url" deno check --quiet --min-dep-age=0 typed.ts) \
  || die "deno check of a typed user failed"
# ...and the types are real, not `any`: a wrong use must fail.
printf 'import { SharedMemory } from "shared-buffer-ipc";\nexport const n: number = SharedMemory.open;\n' \
  > "$work/deno/mistyped.ts"
if (cd "$work/deno" && NPM_CONFIG_REGISTRY="$url" deno check --quiet --min-dep-age=0 mistyped.ts \
  > "$work/mistyped.out" 2>&1); then
  die "deno check accepted a wrong use: the package's types are not seen"
fi
grep -q "is not assignable to type 'number'" "$work/mistyped.out" \
  || { cat "$work/mistyped.out"; die "deno check failed for another reason"; }
deno_run() {
  (cd "$work/deno" && NPM_CONFIG_REGISTRY="$url" deno run --quiet --min-dep-age=0 --allow-ffi peer.mjs "$@")
}
# The JSR package as Deno sees it: the published files (mod.ts and ts/ without the Bun and Node
# adapters, as deno.json's "publish" says) served over http, so the entry is a remote module.
mkdir -p "$work/jsr-files/ts" "$work/jsr"
cp "$root/mod.ts" "$work/jsr-files/"
(cd "$root/ts" && find . -name '*.ts' ! -path './bun/*' ! -path './node/*' -exec cp --parents {} "$work/jsr-files/ts/" \;)
jsr_port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
node -e '
  const [dir, port] = process.argv.slice(1);
  require("http").createServer((req, res) => {
    require("fs").readFile(dir + new URL(req.url, "http://x").pathname, (err, body) => {
      res.writeHead(err ? 404 : 200, { "content-type": "application/typescript" });
      res.end(err ? "" : body);
    });
  }).listen(Number(port), "127.0.0.1");
' "$work/jsr-files" "$jsr_port" &
jsr_server=$!
cp "$root/packaging/install/peer.mjs" "$work/jsr/"
printf '{ "imports": { "shared-buffer-ipc": "http://127.0.0.1:%s/mod.ts" } }\n' "$jsr_port" \
  > "$work/jsr/deno.json"
jsr_run() {
  (cd "$work/jsr" && deno run --quiet --allow-import=127.0.0.1:"$jsr_port" --allow-ffi "$@")
}
for _ in $(seq 600); do
  node -e "fetch('http://127.0.0.1:$jsr_port/mod.ts').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" && break
  sleep 0.1
done
# Without the library it must say where the library comes from.
if jsr_run peer.mjs send /sbi-none x > "$work/jsr.out" 2>&1; then
  die "the remote entry loaded a library it was not given"
fi
grep -q "comes in shared-buffer-ipc-$platform" "$work/jsr.out" \
  || { cat "$work/jsr.out"; die "the remote entry's error does not name the platform package"; }
jsr_lib="$work/node20/node_modules/shared-buffer-ipc-$platform/libshared_buffer_native.so"

# The compiled Bun program, and a Bun bundle (the library copied beside it), run from another
# folder.
cp "$root/packaging/install/peer-worker.mjs" "$work/bun/"
(cd "$work/bun" && bun build --compile peer.mjs peer-worker.mjs --outfile "$work/bin/peer-compiled" >/dev/null)
(cd "$work/bun" && bun build --target=bun peer.mjs --outdir "$work/bun-bundle" >/dev/null)
(cd "$work/bun" && bun build --target=bun --format=cjs peer.mjs --outdir "$work/bun-bundle-cjs" >/dev/null)
say "installed with npm (node $(node --version), node $("$NODE_NEWEST" --version)), bun add, deno npm:; compiled with bun build --compile, bundled with bun build"

# One segment and one channel, shared by every runtime.
base="/sbi-$$-$RANDOM"
deno_run host "$base" 10 > "$work/host.out" 2> "$work/host.err" &
host=$!
for _ in $(seq 1200); do
  grep -q '^ready' "$work/host.out" && break
  kill -0 "$host" 2>/dev/null || { cat "$work/host.err"; die "the Deno host did not start"; }
  sleep 0.1
done
grep -q '^ready' "$work/host.out" || die "the Deno host never became ready"
pids=()
(cd "$work/node20" && node peer.mjs send "$base" node20) & pids+=($!)
(cd "$work/node-newest" && node-newest peer.mjs send "$base" node-newest) & pids+=($!)
(cd "$work/bun" && bun peer.mjs send "$base" bun) & pids+=($!)
(cd / && "$work/bin/peer-compiled" send "$base" bun-compiled) & pids+=($!)
(cd / && "$work/bin/peer-compiled" send-worker "$base" bun-compiled-worker) & pids+=($!)
(cd "$work/bun" && bun peer.mjs send-worker "$base" bun-worker) & pids+=($!)
(cd / && bun "$work/bun-bundle/peer.js" send "$base" bun-bundle) & pids+=($!)
(cd / && bun "$work/bun-bundle-cjs/peer.js" send "$base" bun-bundle-cjs) & pids+=($!)
deno_run send "$base" deno & pids+=($!)
(SHARED_BUFFER_LIB="$jsr_lib" jsr_run --allow-env=SHARED_BUFFER_LIB peer.mjs send "$base" deno-remote) &
pids+=($!)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
# A sender that failed sent nothing: the host would wait for its message for two minutes.
[ "$failed" = 0 ] || { kill "$host" 2>/dev/null; die "a sender failed (its output is above)"; }
wait "$host" || { cat "$work/host.err"; die "the Deno host failed"; }
cat "$work/host.out" >&2
for who in node20 node-newest bun bun-compiled bun-compiled-worker bun-worker bun-bundle \
  bun-bundle-cjs deno deno-remote; do
  grep -q "^received: $who: " "$work/host.out" || die "no message from $who"
done
grep -q "^received: bun-compiled: .*/\$bunfs/" "$work/host.out" \
  || die "the compiled binary did not use its embedded library"
for kind in bun-bundle bun-bundle-cjs; do
  grep -q "^received: $kind: .*library $work/$kind/libshared_buffer_native-" "$work/host.out" \
    || die "the Bun bundle ($kind) did not use the library copied beside it"
done
for who in node20 node-newest bun deno; do
  grep -q "^received: $who: .*/shared-buffer-ipc-$platform/" "$work/host.out" \
    || die "$who did not load the platform package shared-buffer-ipc-$platform"
done
say "ok: 10 processes in 4 runtimes (one Deno from a remote entry, two Bun with a Worker) shared one segment and one channel"
