#!/usr/bin/env bash
# Make the PostgreSQL extension "vector" (pgvector >= 0.8) available to the local cluster.
# Order of preference: already there; the distribution's own package; a build from Debian's
# source package (Debian 12 ships none, so we take trixie's source and build it against
# postgresql-server-dev-<major>). Sourced by deploy/lib/common.sh; needs root.
set -euo pipefail

pgvector_version_ok() {
  # Prints the available version and succeeds when it is >= 0.8.
  local v
  v=$(psql_super -tAc "select default_version from pg_available_extensions where name='vector'" 2>/dev/null || true)
  [ -n "$v" ] || return 1
  dpkg --compare-versions "$v" ge 0.8.0
}

ensure_pgvector() {
  local major
  major=$(pg_major)
  if pgvector_version_ok; then return 0; fi

  log "pgvector: trying the distribution package postgresql-${major}-pgvector"
  if apt-cache show "postgresql-${major}-pgvector" >/dev/null 2>&1; then
    local cand
    cand=$(apt-cache policy "postgresql-${major}-pgvector" | awk '/Candidate:/ {print $2}')
    if [ -n "$cand" ] && [ "$cand" != "(none)" ] && dpkg --compare-versions "$cand" ge 0.8.0; then
      apt_install "postgresql-${major}-pgvector"
      pgvector_version_ok && return 0
    fi
  fi

  log "pgvector: building from Debian's source package (about 30 s)"
  apt_install "postgresql-server-dev-${major}" build-essential dpkg-dev
  local src=/etc/apt/sources.list.d/appliance-pgvector-src.sources
  if [ ! -f "$src" ]; then
    cat > "$src" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -qq -o Dir::Etc::sourcelist="$src" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
  local work
  work=$(mktemp -d)
  (
    cd "$work"
    apt-get source -qq pgvector
    cd pgvector-*/
    make -s PG_CONFIG="/usr/lib/postgresql/${major}/bin/pg_config" >/dev/null
    make -s PG_CONFIG="/usr/lib/postgresql/${major}/bin/pg_config" install >/dev/null
  )
  rm -rf "$work"
  pgvector_version_ok || die "pgvector was built but PostgreSQL does not offer version >= 0.8"
}
