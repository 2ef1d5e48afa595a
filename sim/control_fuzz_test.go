package sim

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzControlAPI sends the simulator's HTTP control API any method and
// request target. It answers 200 with {"agent"/"did"} or an error status
// with {"error"} (400, 404 or 409), or the mux's own 404/405 and path
// clean-up redirects; never a panic or a 500. Traps go only to a loopback
// listener of the test: an input that names another trap target is
// skipped, so the fuzzer never sends packets or DNS queries elsewhere.
func FuzzControlAPI(f *testing.F) {
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sink.Close() })
	cfg := testConfig(f, 2)
	cfg.TrapTarget = sink.LocalAddr().String()
	cfg.DownFor = time.Millisecond
	s := startSim(f, cfg)
	h := ControlHandler(s)
	name := s.agents[0].Name()

	for _, seed := range []struct{ method, target string }{
		{"GET", "/agents"},
		{"POST", "/agents/" + name + "/down"},
		{"POST", "/agents/" + name + "/up"},
		{"POST", "/agents/" + name + "/reboot"},
		{"POST", "/agents/" + name + "/uptime/freeze"},
		{"POST", "/agents/" + name + "/uptime/thaw"},
		{"POST", "/agents/" + name + "/if/2/down"},
		{"POST", "/agents/" + name + "/if/99/up"},
		{"POST", "/agents/" + name + "/if/-1/up"},
		{"POST", "/agents/" + name + "/delay?d=500ms"},
		{"POST", "/agents/" + name + "/delay?d=-1s"},
		{"POST", "/agents/" + name + "/trap?version=1"},
		{"POST", "/agents/" + name + "/trap?target=" + cfg.TrapTarget + "&version=2c"},
		{"POST", "/agents/" + name + "/trap?target=127.0.0.1:0&version=3"},
		{"POST", "/agents/nobody/down"},
		{"POST", "/fault"},
		{"DELETE", "/agents"},
		{"POST", "/agents/%2e%2e/down"},
	} {
		f.Add(seed.method, seed.target)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := http.NewRequestWithContext(ctx, method, "http://sim.test"+target, nil)
		if err != nil || r.URL.Host != "sim.test" {
			return
		}
		if q := r.URL.Query(); q.Get("target") != "" {
			host, _, err := net.SplitHostPort(q.Get("target"))
			if ip, perr := netip.ParseAddr(host); err == nil && (perr != nil || !ip.IsLoopback()) {
				t.Skip("trap target outside loopback")
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusMethodNotAllowed:
		case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			if w.Header().Get("Location") == "" {
				t.Fatalf("%s %q: redirect %d without a Location", method, target, w.Code)
			}
			return
		default:
			t.Fatalf("%s %q: status %d: %s", method, target, w.Code, w.Body)
		}
		if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			return // the mux's own answers, and the ndjson listing
		}
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s %q: %d with a body that is no JSON object: %v: %s", method, target, w.Code, err, w.Body)
		}
		if w.Code == http.StatusOK && body["did"] == "" || w.Code != http.StatusOK && body["error"] == "" {
			t.Fatalf("%s %q: %d with %v", method, target, w.Code, body)
		}
	})
}
