package sim

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestControlHandler(t *testing.T) {
	t.Parallel()
	target, traps := trapListener(t)
	s := startSim(t, testConfig(t, 2))
	srv := httptest.NewServer(ControlHandler(s))
	t.Cleanup(srv.Close)
	a := s.Agents()[1]

	post := func(path string, wantCode int) map[string]string {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != wantCode {
			t.Errorf("POST %s: %d %v, want %d", path, resp.StatusCode, body, wantCode)
		}
		return body
	}
	base := "/agents/" + a.Name()

	post(base+"/down", 200)
	if !a.IsDown() {
		t.Error("down did not take the agent down")
	}
	post(base+"/up", 200)
	if a.IsDown() {
		t.Error("up did not bring the agent up")
	}
	post(base+"/if/2/down", 200)
	if up, _ := a.IfOper(2); up {
		t.Error("if/2/down left the interface up")
	}
	post(base+"/if/2/up", 200)
	if up, _ := a.IfOper(2); !up {
		t.Error("if/2/up left the interface down")
	}
	post(base+"/reboot", 200)
	if a.Boots() != 2 {
		t.Errorf("boots %d after reboot, want 2", a.Boots())
	}
	post(base+"/delay?d=250ms", 200)
	if a.Delay() != 250*time.Millisecond {
		t.Errorf("delay %s, want 250ms", a.Delay())
	}
	post(base+"/delay?d=0", 200)
	post(base+"/trap?target="+target+"&version=2c", 200)
	select {
	case tr := <-traps:
		if tr.from.Port != int(a.Addr().Port()) {
			t.Errorf("trap from %s, want %s", tr.from, a.Addr())
		}
	case <-time.After(5 * time.Second):
		t.Error("no trap")
	}
	post("/fault", 200)
	post(base+"/up", 200) // the random fault may have taken this agent down

	post("/agents/nope/down", 404)
	post(base+"/if/9/down", 404)
	post(base+"/if/x/down", 404)
	post(base+"/delay?d=soon", 400)
	post(base+"/trap?target=127.0.0.1:1&version=4", 400)
	post(base+"/trap", 400)

	resp, err := http.Get(srv.URL + "/agents")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		var info AgentInfo
		if err := json.Unmarshal(sc.Bytes(), &info); err != nil || !strings.HasPrefix(info.Name, "sim-") || info.Port == 0 {
			t.Errorf("agent line %q: %v", sc.Text(), err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d agent lines, want 2", n)
	}
}
