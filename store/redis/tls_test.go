package redis_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/redis"
)

// TestTLS runs the store over TLS to a redis-server with a TLS port and a
// self-signed certificate for 127.0.0.1; a client that does not trust the
// certificate gets ErrUnavailable.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pool := writeSelfSigned(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tlsPort := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	srv := startServer(t,
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", filepath.Join(dir, "cert.pem"),
		"--tls-key-file", filepath.Join(dir, "key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "cert.pem"),
		"--tls-auth-clients", "no")
	ctx := context.Background()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))

	s, err := redis.New(redis.Config{Addr: addr, TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	require.NoError(t, err)
	defer s.Close()
	tok, err := s.Add(ctx, "k", []byte("v"), time.Minute)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", []byte("v2"), tok, time.Minute)
	require.NoError(t, err)
	plain := newStore(t, srv, redis.Config{})
	e, err := plain.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v2", string(e.Value), "the same server behind its TLS port")

	untrusting, err := redis.New(redis.Config{Addr: addr, TLS: &tls.Config{ServerName: "127.0.0.1"}})
	require.NoError(t, err)
	defer untrusting.Close()
	_, err = untrusting.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
	_, err = untrusting.CompareAndSwap(ctx, "k", []byte("v3"), tok, time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "no connection: nothing was sent")
}

// TestDialTimeout: a server that accepts connections but never completes
// the TLS handshake fails each operation after DialTimeout (not after
// the 10 s Timeout, which bounds commands), as unavailable, and a write
// as not sent rather than of unknown outcome.
func TestDialTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	s, err := redis.New(redis.Config{Addr: l.Addr().String(), TLS: &tls.Config{InsecureSkipVerify: true},
		DialTimeout: 200 * time.Millisecond, Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	_, err = s.Add(ctx, "k", []byte("v"), time.Minute)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "the handshake never completed: nothing was sent")
	require.ErrorContains(t, err, "dial")
	require.ErrorIs(t, err, context.DeadlineExceeded, "DialTimeout ended the dial")
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, provider.ErrUnavailable)
}

// writeSelfSigned writes cert.pem and key.pem for 127.0.0.1 into dir and
// returns a pool that trusts the certificate.
func writeSelfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
