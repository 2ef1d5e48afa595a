package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// AgentInfo describes one agent in the control API's listing and in
// `meshmon sim --json`.
type AgentInfo struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Port     uint16 `json:"port"`
	EngineID string `json:"engine_id,omitempty"` // hex
	Down     bool   `json:"down,omitempty"`
	Delay    string `json:"delay,omitempty"`
	Answered uint64 `json:"answered,omitempty"`
}

// Info returns the agent's AgentInfo.
func (a *Agent) Info() AgentInfo {
	info := AgentInfo{
		Name:     a.name,
		Address:  a.Addr().Addr().String(),
		Port:     a.Addr().Port(),
		EngineID: fmt.Sprintf("%x", a.engineID),
		Down:     a.IsDown(),
		Answered: a.Answered(),
	}
	if d := a.Delay(); d > 0 {
		info.Delay = d.String()
	}
	return info
}

// ControlHandler returns an HTTP API to inject faults into a running Sim:
//
//	GET  /agents                           the agents, one JSON object per line
//	POST /agents/{name}/down               stop answering
//	POST /agents/{name}/up                 answer again
//	POST /agents/{name}/reboot             sysUpTime, counters from 0; boots+1
//	POST /agents/{name}/uptime/freeze      sysUpTime stops moving (like a recording)
//	POST /agents/{name}/uptime/thaw        sysUpTime runs again
//	POST /agents/{name}/if/{index}/down    ifOperStatus down(2)
//	POST /agents/{name}/if/{index}/up      ifOperStatus up(1)
//	POST /agents/{name}/delay?d=500ms      answer after d (0 for at once)
//	POST /agents/{name}/trap?target=host:port&version=2c   send a link trap
//	POST /fault                            one random fault (RandomFault)
//
// Successful POSTs answer 200 with {"agent":..., "did":...}; errors answer
// 400 (bad argument) or 404 (unknown agent or interface) with {"error":...}.
// Bind it to loopback only: it has no authentication.
func ControlHandler(s *Sim) http.Handler {
	mux := http.NewServeMux()
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6d6573686d6f6e))

	mux.HandleFunc("GET /agents", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, a := range s.agents {
			if err := enc.Encode(a.Info()); err != nil {
				return
			}
		}
	})
	agentOp := func(pattern string, op func(a *Agent, r *http.Request) (string, error)) {
		mux.HandleFunc("POST /agents/{name}/"+pattern, func(w http.ResponseWriter, r *http.Request) {
			a := s.Agent(r.PathValue("name"))
			if a == nil {
				writeError(w, fmt.Errorf("%w: %q", ErrUnknownAgent, r.PathValue("name")))
				return
			}
			did, err := op(a, r)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"agent": a.name, "did": did})
		})
	}
	agentOp("down", func(a *Agent, _ *http.Request) (string, error) { a.Down(true); return "down", nil })
	agentOp("up", func(a *Agent, _ *http.Request) (string, error) { a.Down(false); return "up", nil })
	agentOp("reboot", func(a *Agent, _ *http.Request) (string, error) {
		a.Reboot()
		return fmt.Sprintf("rebooted (boots %d)", a.Boots()), nil
	})
	agentOp("uptime/freeze", func(a *Agent, _ *http.Request) (string, error) { a.FreezeUptime(true); return "sysUpTime frozen", nil })
	agentOp("uptime/thaw", func(a *Agent, _ *http.Request) (string, error) {
		a.FreezeUptime(false)
		return "sysUpTime running", nil
	})
	for _, state := range []string{"down", "up"} {
		agentOp("if/{index}/"+state, func(a *Agent, r *http.Request) (string, error) {
			idx, err := strconv.Atoi(r.PathValue("index"))
			if err != nil {
				return "", fmt.Errorf("%w: ifIndex %q is not a number", ErrUnknownInterface, r.PathValue("index"))
			}
			if err := a.SetIfOper(idx, state == "up"); err != nil {
				return "", err
			}
			return fmt.Sprintf("interface %d (%s) %s", idx, ifName(idx), state), nil
		})
	}
	agentOp("delay", func(a *Agent, r *http.Request) (string, error) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 {
			return "", badRequest{fmt.Errorf("delay d=%q: want a duration like 500ms or 0", r.URL.Query().Get("d"))}
		}
		a.SetDelay(d)
		return "delay " + d.String(), nil
	})
	agentOp("trap", func(a *Agent, r *http.Request) (string, error) {
		q := r.URL.Query()
		target, version := q.Get("target"), q.Get("version")
		if target == "" {
			target = s.cfg.TrapTarget
		}
		if version == "" {
			version = s.cfg.TrapVersion
		}
		if target == "" {
			return "", badRequest{fmt.Errorf("%w: no target given and no trap target configured", ErrBadTrapTarget)}
		}
		if err := a.SendTrap(r.Context(), target, version); err != nil {
			return "", err
		}
		return fmt.Sprintf("v%s link trap sent to %s", version, target), nil
	})
	mux.HandleFunc("POST /fault", func(w http.ResponseWriter, r *http.Request) {
		rngMu.Lock()
		did, err := s.RandomFault(r.Context(), rng)
		rngMu.Unlock()
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"did": did})
	})
	return mux
}

type badRequest struct{ error }

func (b badRequest) Unwrap() error { return b.error }

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	var br badRequest
	switch {
	case errors.As(err, &br):
	case errors.Is(err, ErrUnknownAgent), errors.Is(err, ErrUnknownInterface):
		code = http.StatusNotFound
	case errors.Is(err, ErrAgentDown), errors.Is(err, ErrClosed), errors.Is(err, ErrNotStarted):
		code = http.StatusConflict
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
