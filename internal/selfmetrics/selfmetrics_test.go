package selfmetrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshmon/meshmon/pki"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no port", Config{Listen: "127.0.0.1", Plaintext: true}, "want host:port"},
		{"no tls", Config{Listen: ":0"}, "no certificate"},
		{"both", Config{Listen: ":0", TLS: &tls.Config{}, Plaintext: true}, "one or the other"},
		{"password alone", Config{Listen: ":0", Plaintext: true, Password: "x"}, "without a user"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := (Config{Listen: ":0"}).Validate(); !errors.Is(err, ErrNoTLS) {
		t.Errorf("no tls: %v, want ErrNoTLS", err)
	}
	if err := (Config{Listen: ":0", Plaintext: true}).Validate(); err != nil {
		t.Errorf("plaintext: %v", err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestServeHTTPSWithAuth: the listener serves HTTPS with the certificate
// it is given, to a client that verifies it against the CA, on loopback
// for a host left out; it asks for the password; the registry has the
// Go and process collectors and the process's own.
func TestServeHTTPSWithAuth(t *testing.T) {
	files, err := pki.Loopback(t.TempDir(), "m", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	own := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshmon_test_things_total", Help: "things"})
	own.Add(3)
	s, err := Serve(Config{Listen: ":0", TLS: &tls.Config{Certificates: []tls.Certificate{pair}}, User: "prometheus", Password: "scrape-secret"}, NewRegistry(own), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("addr %s, url %s: want https on loopback", s.Addr(), s.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := Scrape(ctx(t), client, s.URL()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("scrape without the password: %v, want 401", err)
	}
	if _, err := Scrape(ctx(t), nil, strings.Replace(s.URL(), "https", "http", 1)); err == nil {
		t.Fatal("plain HTTP to the HTTPS listener answered")
	}
	client.Transport = &basicAuth{rt: client.Transport, user: "prometheus", pw: "scrape-secret"}
	fams, err := Scrape(ctx(t), client, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "meshmon_test_things_total"} {
		if _, ok := fams.Value(name); !ok {
			t.Errorf("no %s", name)
		}
	}
	if v, _ := fams.Value("meshmon_test_things_total"); v != 3 {
		t.Errorf("meshmon_test_things_total %v, want 3", v)
	}
}

type basicAuth struct {
	rt       http.RoundTripper
	user, pw string
}

func (b *basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pw)
	return b.rt.RoundTrip(r)
}

func TestServePlaintext(t *testing.T) {
	s, err := Serve(Config{Listen: "127.0.0.1:0", Plaintext: true}, NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://") {
		t.Fatalf("url %s", s.URL())
	}
	if _, err := Scrape(ctx(t), nil, s.URL()); err != nil {
		t.Fatal(err)
	}
}
