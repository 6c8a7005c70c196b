// Command security runs the franz-go security checks of tests/compat/security/run.sh.
//
//	go run . SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP CERT_DIR RECORDS
//
// Produces RECORDS records as alice and reads them back (in a consumer group) over SASL_SSL
// with SCRAM-SHA-256, SCRAM-SHA-512 (pkg/sasl/scram) and PLAIN (pkg/sasl/plain) and over
// mutual TLS (crypto/tls with alice's certificate), on the topics run.sh created; a wrong
// password must fail with SASL_AUTHENTICATION_FAILED. Prints `ok   NAME` / `FAIL NAME: why`,
// last line `franz-go-security: N passed, M failed`; exits 1 when any failed.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

var passed, failed int

func check(name string, fn func() error) {
	if err := fn(); err != nil {
		failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	passed++
	fmt.Printf("ok   %s\n", name)
}

func mechanism(name, user, password string) sasl.Mechanism {
	switch name {
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	default:
		return plain.Auth{User: user, Pass: password}.AsMechanism()
	}
}

func tlsConfig(certs string, clientCert string) (*tls.Config, error) {
	ca, err := os.ReadFile(certs + "/ca.pem")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no CA certificate in ca.pem")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if clientCert != "" {
		pair, err := tls.LoadX509KeyPair(certs+"/"+clientCert+".pem", certs+"/"+clientCert+"-key.pem")
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func roundTrip(opts []kgo.Opt, topic string, records int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return err
	}
	rs := make([]*kgo.Record, records)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))}
	}
	err = p.ProduceSync(ctx, rs...).FirstErr()
	p.Close()
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	c, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
	if err != nil {
		return err
	}
	defer c.Close()
	var got []string
	for len(got) < records && ctx.Err() == nil {
		fs := c.PollFetches(ctx)
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				return fmt.Errorf("consume: %w", e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != records {
		return fmt.Errorf("read %d of %d records", len(got), records)
	}
	for i, v := range got {
		if v != fmt.Sprintf("v%d", i) {
			return fmt.Errorf("record %d is %q", i, v)
		}
	}
	return nil
}

func wrongPassword(opts []kgo.Opt) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Ping(ctx)
	if err == nil {
		return errors.New("ping succeeded with a wrong password")
	}
	if errors.Is(err, kerr.SaslAuthenticationFailed) || strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") {
		return nil
	}
	return fmt.Errorf("wanted SASL_AUTHENTICATION_FAILED, got %w", err)
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: go run . SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP CERT_DIR RECORDS")
		os.Exit(2)
	}
	saslBootstrap, sslBootstrap, certs := os.Args[1], os.Args[2], os.Args[3]
	records, err := strconv.Atoi(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, "RECORDS:", err)
		os.Exit(2)
	}
	serverOnly, err := tlsConfig(certs, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TLS:", err)
		os.Exit(1)
	}
	withAlice, err := tlsConfig(certs, "alice")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TLS:", err)
		os.Exit(1)
	}
	sasled := func(mech, user, pass string) []kgo.Opt {
		return []kgo.Opt{kgo.SeedBrokers(saslBootstrap), kgo.DialTLSConfig(serverOnly.Clone()),
			kgo.SASL(mechanism(mech, user, pass)), kgo.RequestRetries(2)}
	}
	mechs := [][2]string{{"SCRAM-SHA-256", "scram256"}, {"SCRAM-SHA-512", "scram512"}, {"PLAIN", "plain"}}
	for _, m := range mechs {
		check(fmt.Sprintf("SASL_SSL %s produce and consume %d", m[0], records), func() error {
			return roundTrip(sasled(m[0], "alice", "alice-secret"), "sec-franz-"+m[1], records)
		})
	}
	check(fmt.Sprintf("mutual TLS produce and consume %d", records), func() error {
		return roundTrip([]kgo.Opt{kgo.SeedBrokers(sslBootstrap), kgo.DialTLSConfig(withAlice)}, "sec-franz-mtls", records)
	})
	for _, m := range mechs {
		check(fmt.Sprintf("SASL_SSL %s wrong password: SASL_AUTHENTICATION_FAILED", m[0]), func() error {
			return wrongPassword(sasled(m[0], "alice", "not-alices-password"))
		})
	}
	fmt.Printf("franz-go-security: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
