package sim

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeControl: the control API answers on the listener until the
// context ends, and ServeControl then returns without error.
func TestServeControl(t *testing.T) {
	t.Parallel()
	s := startSim(t, testConfig(t, 2))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, s, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/agents")
	if err != nil {
		t.Fatal(err)
	}
	var agents []AgentInfo
	dec := json.NewDecoder(resp.Body) // one agent a line
	for dec.More() {
		var a AgentInfo
		if err := dec.Decode(&a); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	resp.Body.Close()
	if len(agents) != 2 {
		t.Fatalf("GET /agents: %v; want 2 agents", agents)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeControl after its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeControl did not return after its context ended")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/agents"); err == nil {
		t.Fatal("the control API still answers")
	}
}
