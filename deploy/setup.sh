#!/usr/bin/env bash
# Prepares this machine for the hub: the one set-up script behind `make demo`, `make test`
# and `.ci/run`.
#
#   deploy/setup.sh demo    RabbitMQ running with its management plugin (what `vdx demo` needs)
#   deploy/setup.sh test    the same, plus PostgreSQL running, xmlsec1, a JDK (javac) and
#                           Debian's chromium (the console's browser tests)
#
# Each step either is already done, is done here, or prints one line saying what to do by
# hand; nothing is skipped silently. Installing packages needs root and apt; without them
# the script says what to install and carries on (the tests that need it skip, and fail
# under CI=true). It exits non-zero only when a step it could do failed.
set -uo pipefail

mode=${1:-test}
case $mode in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

amqp_host=127.0.0.1
management=${VDX_MANAGEMENT_URL:-http://$amqp_host:15672}
failed=0

say() { printf 'setup: %s\n' "$*"; }
todo() { printf 'setup: TO DO BY HAND: %s\n' "$*"; }
broke() { printf 'setup: FAILED: %s\n' "$*" >&2; failed=1; }
is_root() { [ "$(id -u)" = 0 ]; }

management_up() {
  curl -fsS -m 2 -u guest:guest "$management/api/overview" >/dev/null 2>&1
}

apt_install() {  # apt_install COMMAND PACKAGE: make COMMAND exist, or say how
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return 0
  if is_root && command -v apt-get >/dev/null 2>&1; then
    say "installing $package (for $command)"
    if apt-get install -y -q "$package" >/dev/null 2>&1 ||
       { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$package" >/dev/null 2>&1; }; then
      return 0
    fi
    broke "apt-get install $package did not succeed"
  else
    todo "install $package (sudo apt-get install $package): $command is missing"
  fi
  return 1
}

rabbitmq() {
  if management_up; then
    return 0
  fi
  if ! command -v rabbitmqctl >/dev/null 2>&1; then
    todo "install and start RabbitMQ 3.10+ (sudo apt-get install rabbitmq-server), then" \
         "rabbitmq-plugins enable rabbitmq_management"
    return
  fi
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    if is_root; then
      say "starting RabbitMQ"
      rabbitmq-server -detached >/dev/null 2>&1 || true
    else
      todo "start RabbitMQ (sudo rabbitmq-server -detached, or sudo systemctl start rabbitmq-server)"
      return
    fi
  fi
  # await_startup gives up at once while the Erlang node is not reachable yet (the first
  # seconds after -detached): ask again until it answers.
  local started=""
  for _ in $(seq 24); do
    if rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then started=1; break; fi
    sleep 5
  done
  if [ -z "$started" ]; then
    broke "RabbitMQ did not start within 120 s (see /var/log/rabbitmq/)"
    return
  fi
  say "enabling the RabbitMQ management plugin"
  if ! rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1; then
    if is_root; then broke "rabbitmq-plugins enable rabbitmq_management did not succeed"
    else todo "sudo rabbitmq-plugins enable rabbitmq_management"; fi
    return
  fi
  for _ in $(seq 60); do
    management_up && return 0
    sleep 1
  done
  broke "the RabbitMQ management API did not answer at $management within 60 s"
}

postgresql() {
  command -v pg_lsclusters >/dev/null 2>&1 || {
    say "PostgreSQL is not installed: its tests skip (they fail under CI=true)"
    return
  }
  pg_lsclusters -h | awk '$3 == 5432 && $4 ~ /online/ {found=1} END {exit !found}' && return
  local version
  version=$(ls /etc/postgresql | head -n 1)
  if is_root; then
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      broke "pg_ctlcluster $version main start did not succeed"
  else
    todo "start PostgreSQL (sudo pg_ctlcluster $version main start)"
  fi
}

rabbitmq
if [ "$mode" = test ]; then
  postgresql
  apt_install xmlsec1 xmlsec1                 # interop tests: signatures both ways
  apt_install javac default-jdk-headless      # the real VXP SDK tests compile a driver
  apt_install chromium chromium               # the console's browser tests (Playwright)
fi
exit $failed
