#!/usr/bin/env bash
# Single-node KRaft Apache Kafka broker for the local stack, the tests and CI (no Docker).
#
#   kafka-broker.sh fetch
#       Download the broker jars (deploy/kafka/pom.xml) from Maven Central into the git-ignored cache
#       deploy/kafka/lib/. Idempotent; a no-op (milliseconds) when the cache is complete.
#
#   kafka-broker.sh run --data-dir DIR --port P --controller-port C [--heap-mb 512]
#                       [--sasl-port S] [--scram-file FILE] [--super-user NAME]...
#                       [--tls-port T --tls-keystore FILE --tls-keystore-password-file FILE]
#                       [--override key=value]... [--die-with-parent]
#       Fetch if needed, write DIR/server.properties, format DIR/data once (a restart on the same DIR
#       keeps the cluster id and all data), then exec the broker in the foreground: the PID of this
#       script becomes the PID of the JVM. Logs go to stderr; "Kafka Server started" marks startup.
#       P is the unauthenticated PLAINTEXT listener on 127.0.0.1 (loopback tooling only);
#       --sasl-port adds a SASL_PLAINTEXT listener (SCRAM-SHA-512) on 127.0.0.1 for the services;
#       --scram-file names a file of SCRAM credentials, one `SCRAM-SHA-512=[name=N,password=P]` per
#       line, created at format time (ignored once DIR is formatted); --super-user adds User:NAME to
#       super.users (User:ANONYMOUS always is one). The StandardAuthorizer is always on.
#       --tls-port adds a SASL_SSL listener (TLS, then SCRAM-SHA-512; needs --sasl-port) on 127.0.0.1
#       whose certificate and key are in the PKCS12 --tls-keystore, its password in the file
#       --tls-keystore-password-file (one line).
#       --override is passed to kafka.Kafka (e.g. extra listeners); --die-with-parent makes the
#       kernel SIGKILL the broker when the process that started this script dies (prctl PDEATHSIG).
#
# Environment: JAVA_HOME (optional; otherwise the Debian JDK 17 when present, else `java` on PATH),
#              KAFKA_MVN (default `mvn`).
# See deploy/README.md and docs/kafka-security.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.properties"
CACHE_DIR="$SCRIPT_DIR/lib"
DEBIAN_JDK17=/usr/lib/jvm/java-17-openjdk-amd64

die() { echo "kafka-broker.sh: $*" >&2; exit 1; }
log() { echo "kafka-broker.sh: $*" >&2; }

usage() {
  sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

pom_hash() { sha256sum "$POM" | cut -c1-12; }

# The jars of the current pom live in lib/<hash of pom.xml>/; the directory only ever appears by an
# atomic rename of a complete staging directory, so an interrupted fetch never leaves a half cache.
jar_dir() { echo "$CACHE_DIR/$(pom_hash)"; }

cache_ok() {
  local dir="$1"
  [[ -f "$dir/.complete" ]] && compgen -G "$dir/kafka_2.13-*.jar" >/dev/null
}

check_jars() {
  local dir="$1" n
  compgen -G "$dir/kafka_2.13-*.jar" >/dev/null || { log "no kafka_2.13 jar in $dir"; return 1; }
  n=$(find "$dir" -maxdepth 1 -name 'log4j-slf4j-impl-*.jar' | wc -l)
  [[ "$n" -eq 1 ]] || { log "expected exactly one log4j-slf4j-impl jar in $dir, found $n"; return 1; }
  local other
  other=$(find "$dir" -maxdepth 1 \( -name 'slf4j-reload4j-*' -o -name 'logback-classic-*' -o -name 'slf4j-simple-*' \
    -o -name 'slf4j-nop-*' -o -name 'log4j-slf4j2-impl-*' \) -printf '%f ')
  [[ -z "$other" ]] || { log "conflicting SLF4J bindings in $dir: $other"; return 1; }
}

cmd_fetch() {
  cache_ok "$(jar_dir)" && return 0
  mkdir -p "$CACHE_DIR"
  # Serialise concurrent fetches (parallel test workers); the loser finds the cache complete. The lock
  # fd only exists in this subshell, so the broker exec'ed later does not inherit it.
  ( fetch_locked ) 9>"$CACHE_DIR/.fetch.lock"
}

fetch_locked() {
  local dest
  dest="$(jar_dir)"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  cache_ok "$dest" && return 0
  # Under the lock no other fetch is running: anything staged earlier is a leftover of an
  # interrupted fetch.
  rm -rf "$CACHE_DIR"/.staging.* 2>/dev/null || true
  if [[ -e "$dest" ]]; then rm -rf "$dest"; fi

  local mvn="${KAFKA_MVN:-mvn}"
  command -v "$mvn" >/dev/null 2>&1 || die "Maven ($mvn) not found; install maven or set KAFKA_MVN"
  local staging start
  staging="$(mktemp -d "$CACHE_DIR/.staging.XXXXXX")"
  start=$(date +%s%N)
  log "fetching broker jars from Maven Central into $dest"
  # mvn output goes to stderr so that stdout stays clean (Debian's Maven 3.8 prints stray ANSI
  # resets even with -B -q: strip them).
  if ! JAVA_HOME="$(java_home_for_mvn)" "$mvn" -B -q -Dstyle.color=never -f "$POM" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging" 2>&1 \
      | awk '{ gsub(/\033\[[0-9;]*m/, ""); if (length($0)) print }' >&2; then
    rm -rf "$staging"
    die "mvn dependency:copy-dependencies failed"
  fi
  check_jars "$staging" || { rm -rf "$staging"; exit 1; }
  cp "$POM" "$staging/.pom.xml"
  date -u +%FT%TZ >"$staging/.complete"
  mv -T "$staging" "$dest" 2>/dev/null || rm -rf "$staging"
  cache_ok "$dest" || die "fetch did not produce a complete cache in $dest"
  # Drop caches of older poms.
  find "$CACHE_DIR" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$dest")" ! -name '.staging.*' \
    -exec rm -rf {} + 2>/dev/null || true
  log "fetched $(find "$dest" -maxdepth 1 -name '*.jar' | wc -l) jars in $(( ($(date +%s%N) - start) / 1000000 )) ms"
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" ]]; then
    [[ -x "$JAVA_HOME/bin/java" ]] || die "JAVA_HOME=$JAVA_HOME has no bin/java"
    echo "$JAVA_HOME/bin/java"
  elif [[ -x "$DEBIAN_JDK17/bin/java" ]]; then
    echo "$DEBIAN_JDK17/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "no Java found: install a JDK 17 (openjdk-17-jre-headless) or set JAVA_HOME"
  fi
}

java_home_for_mvn() {
  if [[ -n "${JAVA_HOME:-}" ]]; then
    echo "$JAVA_HOME"
  elif [[ -x "$DEBIAN_JDK17/bin/java" ]]; then
    echo "$DEBIAN_JDK17"
  else
    echo ""
  fi
}

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )); }

# 16 random bytes as URL-safe base64 without padding (22 characters), as Uuid.randomUuid() prints;
# never starting with '-' (argparse would read it as a flag).
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ "$id" != -* && ${#id} -eq 22 ]] && { echo "$id"; return; }
  done
}

cmd_run() {
  local data_dir="" port="" controller_port="" heap_mb=512 die_with_parent=0 sasl_port="" scram_file=""
  local tls_port="" tls_keystore="" tls_password_file=""
  local -a overrides=() super_users=()
  while (($#)); do
    case "$1" in
      --data-dir) data_dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --data-dir=*) data_dir="${1#*=}"; shift ;;
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --controller-port) controller_port="${2:?--controller-port needs a value}"; shift 2 ;;
      --controller-port=*) controller_port="${1#*=}"; shift ;;
      --heap-mb) heap_mb="${2:?--heap-mb needs a value}"; shift 2 ;;
      --heap-mb=*) heap_mb="${1#*=}"; shift ;;
      --sasl-port) sasl_port="${2:?--sasl-port needs a value}"; shift 2 ;;
      --sasl-port=*) sasl_port="${1#*=}"; shift ;;
      --scram-file) scram_file="${2:?--scram-file needs a value}"; shift 2 ;;
      --scram-file=*) scram_file="${1#*=}"; shift ;;
      --tls-port) tls_port="${2:?--tls-port needs a value}"; shift 2 ;;
      --tls-port=*) tls_port="${1#*=}"; shift ;;
      --tls-keystore) tls_keystore="${2:?--tls-keystore needs a value}"; shift 2 ;;
      --tls-keystore=*) tls_keystore="${1#*=}"; shift ;;
      --tls-keystore-password-file) tls_password_file="${2:?--tls-keystore-password-file needs a value}"; shift 2 ;;
      --tls-keystore-password-file=*) tls_password_file="${1#*=}"; shift ;;
      --super-user) super_users+=("${2:?--super-user needs a name}"); shift 2 ;;
      --super-user=*) super_users+=("${1#*=}"); shift ;;
      --override) overrides+=(--override "${2:?--override needs key=value}"); shift 2 ;;
      --override=*) overrides+=(--override "${1#*=}"); shift ;;
      --die-with-parent) die_with_parent=1; shift ;;
      -h|--help) usage ;;
      *) die "run: unknown argument '$1'" ;;
    esac
  done
  [[ -n "$data_dir" ]] || die "run: --data-dir is required"
  is_port "$port" || die "run: --port must be a TCP port number"
  is_port "$controller_port" || die "run: --controller-port must be a TCP port number"
  [[ "$port" != "$controller_port" ]] || die "run: --port and --controller-port must differ"
  [[ "$heap_mb" =~ ^[0-9]+$ ]] && (( heap_mb >= 128 )) || die "run: --heap-mb must be a number >= 128"
  if [[ -n "$sasl_port" ]]; then
    is_port "$sasl_port" || die "run: --sasl-port must be a TCP port number"
    [[ "$sasl_port" != "$port" && "$sasl_port" != "$controller_port" ]] || die "run: --sasl-port must differ from the other ports"
  fi
  [[ -z "$scram_file" || -f "$scram_file" ]] || die "run: --scram-file $scram_file does not exist"
  [[ -z "$scram_file" || -n "$sasl_port" ]] || die "run: --scram-file needs --sasl-port"
  local tls_password=""
  if [[ -n "$tls_port" ]]; then
    is_port "$tls_port" || die "run: --tls-port must be a TCP port number"
    [[ -n "$sasl_port" ]] || die "run: --tls-port needs --sasl-port (its listener is SASL_SSL)"
    [[ "$tls_port" != "$port" && "$tls_port" != "$sasl_port" && "$tls_port" != "$controller_port" ]] ||
      die "run: --tls-port must differ from the other ports"
    [[ -f "$tls_keystore" ]] || die "run: --tls-port needs --tls-keystore, an existing PKCS12 file"
    [[ -f "$tls_password_file" ]] || die "run: --tls-port needs --tls-keystore-password-file, an existing file"
    tls_password="$(head -n 1 "$tls_password_file")"
    [[ "$tls_password" =~ ^[A-Za-z0-9_-]+$ ]] || die "run: the keystore password must match [A-Za-z0-9_-]+"
    tls_keystore="$(cd "$(dirname "$tls_keystore")" && pwd -P)/$(basename "$tls_keystore")"
  fi
  local name super="User:ANONYMOUS"
  for name in "${super_users[@]}"; do
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "run: --super-user '$name' must match [A-Za-z0-9._-]+"
    super="$super;User:$name"
  done

  local parent_pid
  parent_pid=$(awk '{print $4}' "/proc/$$/stat" 2>/dev/null || echo "$PPID")

  cmd_fetch
  local java cp
  java="$(java_bin)"
  cp="$(jar_dir)/*"   # expanded by the JVM, not the shell

  mkdir -p "$data_dir"
  data_dir="$(cd "$data_dir" && pwd -P)"
  local log_dirs="$data_dir/data"
  local props="$data_dir/server.properties"
  local log4j="-Dlog4j2.configurationFile=$LOG4J_CONFIG"

  # PLAINTEXT: unauthenticated, loopback only, for tooling (topic setup, tests); SASL_PLAINTEXT: the
  # services' authenticated listener (SCRAM-SHA-512, on loopback); SASL_SSL: the same with TLS.
  local listener_props
  if [[ -n "$sasl_port" ]]; then
    local listeners="PLAINTEXT://127.0.0.1:${port},SASL_PLAINTEXT://127.0.0.1:${sasl_port}"
    local protocols="PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    if [[ -n "$tls_port" ]]; then
      listeners="${listeners},SASL_SSL://127.0.0.1:${tls_port}"
      protocols="${protocols},SASL_SSL:SASL_SSL"
    fi
    listener_props="listeners=${listeners},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=${listeners}
listener.security.protocol.map=${protocols},CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
# Server side of SCRAM: the credentials come from the metadata log; no options needed (the broker
# itself never logs in through SASL: inter-broker traffic uses PLAINTEXT on loopback).
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    if [[ -n "$tls_port" ]]; then
      listener_props="${listener_props}
# The same users over TLS (SASL_SSL): what services use beyond loopback (docs/kafka-security.md).
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=${tls_keystore}
listener.name.sasl_ssl.ssl.keystore.password=${tls_password}"
    fi
  else
    listener_props="listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  fi

  # Rewritten on every run (ports may change between runs: the quorum is static, see README). Readable
  # by this user only: it may hold the TLS keystore's password.
  local old_umask
  old_umask="$(umask)"
  umask 077
  rm -f "$props.tmp" # a leftover would keep its mode
  cat >"$props.tmp" <<EOF
# Written by deploy/kafka/kafka-broker.sh on every start; edits are lost.
process.roles=broker,controller
node.id=1
# static quorum (format without --standalone): ports may change between restarts
controller.quorum.voters=1@127.0.0.1:${controller_port}
${listener_props}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# ACLs are enforced (KRaft's own authorizer; ACLs live in the metadata log, kept across restarts).
# No ACL means no access. Super users bypass ACLs:
# - User:ANONYMOUS is the principal of every PLAINTEXT connection: this node's own broker->controller
#   and inter-broker traffic (CONTROLLER and PLAINTEXT listeners, both on 127.0.0.1) and the loopback
#   tooling listener. It must be a super user or the node could not talk to itself; it also makes the
#   tooling listener all-powerful, which is why it is bound to 127.0.0.1 and exists for local tooling
#   and tests only (never in production: see docs/kafka-security.md).
# - the SCRAM admin user(s) given with --super-user, for administration over the SASL listener.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=${super}
log.dirs=${log_dirs}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# single node: internal topics default to RF 3 / min ISR 2 and would never come up
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# test speed: 1 partition instead of 50, created on first group/transaction use
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
# topics are created explicitly (admin client); producing to a missing topic fails
auto.create.topics.enable=false
# small machine: fewer threads, smaller on-heap log-cleaner buffer (default 128 MiB)
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.dedupe.buffer.size=33554432
log.cleaner.backoff.ms=1000
# restart after a crash (SIGKILL): the broker cannot re-register until its old session expires
# (default 9 s / 2 s heartbeats, which made such a restart take ~12.5 s instead of ~6.5 s)
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
EOF
  umask "$old_umask"
  mv -f "$props.tmp" "$props"

  if [[ ! -f "$log_dirs/meta.properties" ]]; then
    local cluster_id
    if [[ -s "$data_dir/cluster-id" ]]; then
      cluster_id="$(cat "$data_dir/cluster-id")"
    else
      cluster_id="$(new_cluster_id)"
      echo "$cluster_id" >"$data_dir/cluster-id"
    fi
    log "formatting $log_dirs (cluster id $cluster_id)"
    local format_start
    format_start=$(date +%s%N)
    # The formatter's main class and arguments go through a java @argfile (mode 0600, deleted right
    # after): SCRAM passwords never appear on a command line (ps, /proc/PID/cmdline).
    # --ignore-formatted: harmless for a fresh dir, tolerates a format interrupted after meta.properties
    local argfile="$data_dir/.format.args" line n_scram=0
    (
      umask 077
      printf '%s\n' kafka.tools.StorageTool format --ignore-formatted --cluster-id "$cluster_id" --config "$props" >"$argfile"
    )
    if [[ -n "$scram_file" ]]; then
      while IFS= read -r line || [[ -n "$line" ]]; do
        [[ -z "$line" ]] && continue
        # Only characters that need no quoting in an argfile nor escaping in SCRAM's [k=v,...] syntax.
        [[ "$line" =~ ^SCRAM-SHA-(256|512)=\[name=[A-Za-z0-9._-]+,password=[A-Za-z0-9_-]+\]$ ]] \
          || { rm -f "$argfile"; die "--scram-file: bad line (expected SCRAM-SHA-512=[name=N,password=P], N: [A-Za-z0-9._-], P: [A-Za-z0-9_-])"; }
        printf '%s\n%s\n' --add-scram "$line" >>"$argfile"
        n_scram=$((n_scram + 1))
      done <"$scram_file"
    fi
    "$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true "$log4j" \
      -cp "$cp" "@$argfile" 1>&2 \
      || { rm -f "$argfile"; die "storage format failed for $log_dirs"; }
    rm -f "$argfile"
    (( n_scram == 0 )) || log "created $n_scram SCRAM credential(s) at format time"
    log "formatted in $(( ($(date +%s%N) - format_start) / 1000000 )) ms"
  fi

  local -a prefix=()
  if (( die_with_parent )); then
    # The parent died while we were fetching/formatting: do not start an orphan broker.
    if [[ "$(awk '{print $4}' "/proc/$$/stat" 2>/dev/null || echo "$parent_pid")" != "$parent_pid" ]]; then
      die "parent process $parent_pid is gone; not starting the broker"
    fi
    if command -v setpriv >/dev/null 2>&1; then
      prefix=(setpriv --pdeathsig KILL --)
    else
      log "setpriv not found: --die-with-parent is not enforced by the kernel"
    fi
  fi

  exec "${prefix[@]}" "$java" -Xms256m "-Xmx${heap_mb}m" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true "$log4j" \
    -cp "$cp" kafka.Kafka "$props" "${overrides[@]}"
}

main() {
  (($#)) || usage
  local sub="$1"; shift
  case "$sub" in
    fetch) (($# == 0)) || die "fetch takes no arguments"; cmd_fetch ;;
    run) cmd_run "$@" ;;
    java) java_bin ;;   # prints the JVM the broker would use
    -h|--help|help) usage ;;
    *) die "unknown subcommand '$sub' (expected fetch or run)" ;;
  esac
}

main "$@"
