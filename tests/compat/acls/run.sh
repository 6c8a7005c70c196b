#!/usr/bin/env bash
# ACLs with Kafka 4.x's kafka-acls against a Kafka-protocol server.
#
#   tests/compat/acls/run.sh BOOTSTRAP
#
# kafka-acls (org.apache.kafka.tools.AclCommand from Apache Kafka 4.3.1, jars via
# bench/kafka/fetch-kafka.sh): --add literal and prefixed, allow and deny bindings for
# topics, groups and transactional ids; --list them (all, by resource, by principal);
# --remove them again and check they are gone. Every binding names principals of its
# own (User:compat-acl-*), and all are removed on exit, so with `--authorizer acl` other
# suites sharing the server are not affected. Last line: `acls: N passed, M failed`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/kafka4.sh
source "$here/../lib/kafka4.sh"

acls() { java -cp "$libs/*" org.apache.kafka.tools.AclCommand --bootstrap-server "$bootstrap" "$@" 2>&1; }

alice=User:compat-acl-alice
bob=User:compat-acl-bob
cleanup() {
  for p in "$alice" "$bob"; do
    for t in topic group transactional-id; do
      for pt in literal prefixed; do
        acls --remove --force --principal "$p" "--$t" '*' --resource-pattern-type "$pt" >/dev/null || true
      done
    done
  done
  acls --remove --force --allow-principal "$alice" --operation Read --topic compat-acl-t >/dev/null || true
  acls --remove --force --topic compat-acl- --resource-pattern-type prefixed >/dev/null || true
  acls --remove --force --deny-principal "$bob" --operation Write --topic compat-acl-t >/dev/null || true
  acls --remove --force --group compat-acl-g >/dev/null || true
  acls --remove --force --transactional-id compat-acl-tx >/dev/null || true
}
trap cleanup EXIT

# check / absent NAME TEXT -- AclCommand args... (tests/compat/lib/expect.sh)
TOOL=acls
# shellcheck source=../lib/expect.sh
source "$here/../lib/expect.sh"

lit_topic='ResourcePattern(resourceType=TOPIC, name=compat-acl-t, patternType=LITERAL)'
pre_topic='ResourcePattern(resourceType=TOPIC, name=compat-acl-, patternType=PREFIXED)'
group='ResourcePattern(resourceType=GROUP, name=compat-acl-g, patternType=LITERAL)'
txn='ResourcePattern(resourceType=TRANSACTIONAL_ID, name=compat-acl-tx, patternType=LITERAL)'
alice_read="(principal=$alice, host=*, operation=READ, permissionType=ALLOW)"
bob_write_deny="(principal=$bob, host=*, operation=WRITE, permissionType=DENY)"
alice_write_pre="(principal=$alice, host=*, operation=WRITE, permissionType=ALLOW)"

check "add a literal allow" "$alice_read" -- \
  --add --allow-principal "$alice" --operation Read --topic compat-acl-t
check "add a literal deny" "$bob_write_deny" -- \
  --add --deny-principal "$bob" --operation Write --topic compat-acl-t
check "add a prefixed allow" "$alice_write_pre" -- \
  --add --allow-principal "$alice" --operation Write --topic compat-acl- --resource-pattern-type prefixed
check "add a consumer's group ACL" "$group" -- \
  --add --allow-principal "$alice" --operation Read --group compat-acl-g
check "add a host-bound transactional-id ACL" "host=127.0.0.1, operation=WRITE" -- \
  --add --allow-principal "$bob" --allow-host 127.0.0.1 --operation Write --transactional-id compat-acl-tx
check "adding again keeps one copy" "$alice_read" -- \
  --add --allow-principal "$alice" --operation Read --topic compat-acl-t

check "list one literal resource" "$bob_write_deny" -- --list --topic compat-acl-t
absent "a literal listing leaves out prefixed" "$pre_topic" -- --list --topic compat-acl-t
check "list the prefixed resource" "$alice_write_pre" -- \
  --list --topic compat-acl- --resource-pattern-type prefixed
check "match finds literal and prefixed" "$pre_topic" -- \
  --list --topic compat-acl-t --resource-pattern-type match
check "list everything" "$txn" -- --list
check "list by principal" "$group" -- --list --principal "$alice"
absent "a principal's listing leaves out others" "$bob" -- --list --principal "$alice"
out="$(acls --list --topic compat-acl-t)"
if [[ "$(grep -cF -- "$alice_read" <<<"$out")" -eq 1 ]]; then
  passed=$((passed + 1)); echo "ok   identical bindings are stored once"
else
  failed=$((failed + 1)); echo "FAIL identical bindings are stored once:"; sed 's/^/     /' <<<"$out"
fi

acls --remove --force --deny-principal "$bob" --operation Write --topic compat-acl-t >/dev/null || true
absent "remove one binding" "$bob_write_deny" -- --list --topic compat-acl-t
check "the other binding stays" "$alice_read" -- --list --topic compat-acl-t
acls --remove --force --topic compat-acl- --resource-pattern-type prefixed >/dev/null || true
absent "remove a prefixed resource's bindings" "$pre_topic" -- --list
cleanup
absent "cleaned up" "compat-acl-" -- --list

echo "acls: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
