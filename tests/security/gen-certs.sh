#!/usr/bin/env bash
# Generate a throw-away PKI for the security tests and benchmarks with the openssl CLI.
#
#   tests/security/gen-certs.sh OUTDIR
#
# Writes into OUTDIR (created if missing):
#   ca.pem, ca-key.pem                a self-signed CA (10 years)
#   server.pem, server-key.pem        server certificate for 127.0.0.1 and localhost
#                                     (SAN IP:127.0.0.1, DNS:localhost), key in PKCS#8
#   alice.pem, alice-key.pem          client certificates (subject CN=alice / CN=bob) for
#   bob.pem, bob-key.pem              mutual TLS, keys in PKCS#8
#   truststore.p12                    the CA, for Java (PKCS12)
#   server.p12, alice.p12, bob.p12    key + certificate chain, for Java (PKCS12)
# Every PKCS12 store has the password in STORE_PASSWORD (default `changeit`). Keys are
# unencrypted (test material only). Idempotent: when OUTDIR/ca.pem exists nothing is redone.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out="$1"
pass="${STORE_PASSWORD:-changeit}"
command -v openssl >/dev/null || { echo "gen-certs: openssl is not on PATH" >&2; exit 1; }
mkdir -p "$out"
cd "$out"
[[ -f ca.pem && -f bob.p12 ]] && exit 0

quiet() { "$@" >/dev/null 2>&1 || { echo "gen-certs: failed: $*" >&2; "$@" >&2; exit 1; }; }

quiet openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 3650 \
  -subj "/CN=Shoal Test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

# issue NAME SUBJECT EXTFILE_CONTENT
issue() {
  local name="$1" subj="$2" ext="$3"
  quiet openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name-key.pem"
  quiet openssl req -new -key "$name-key.pem" -subj "$subj" -out "$name.csr"
  printf '%s\n' "$ext" >"$name.ext"
  quiet openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 3650 -sha256 -extfile "$name.ext" -out "$name.pem"
  quiet openssl pkcs12 -export -in "$name.pem" -inkey "$name-key.pem" -certfile ca.pem \
    -name "$name" -out "$name.p12" -passout "pass:$pass"
  rm -f "$name.csr" "$name.ext"
}
issue server "/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
for user in alice bob; do
  issue "$user" "/CN=$user" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
done

rm -f truststore.p12
quiet keytool -importcert -noprompt -alias ca -file ca.pem -keystore truststore.p12 \
  -storetype PKCS12 -storepass "$pass"
rm -f ca.srl
