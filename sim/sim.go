// Package sim simulates a fleet of SNMP agents for meshmon's demo, tests and
// benchmarks. Each agent is a real SNMP v1/v2c/v3 (USM) agent at its own
// loopback address, on its own UDP socket or (Config.SharedSocket, Linux)
// on one socket all agents share, built on gosnmp's packet encoding, with a
// small MIB (system group, ifTable, ifXTable) whose uptime and counters move
// with time, and faults that can be injected on command: down, interface
// down, reboot, slow answers and traps.
package sim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/meshmon/meshmon"
)

// Sim is a fleet of simulated agents. Create it with New, bind it with
// Start, stop it with Close. Its methods are safe for concurrent use.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	mib    *mib
	users  []usmUser
	agents []*Agent
	byName map[string]*Agent
	serve  [4]bool // by gosnmp.SnmpVersion

	// shared is the socket every agent shares (Config.SharedSocket), read
	// by the readers goroutines, which dispatch by destination address.
	shared  *sharedConn
	byAddr  map[netip.Addr]*Agent
	readers sync.WaitGroup

	// Shared, read-only decoders: gosnmp's UnmarshalTrap does not write to
	// its receiver (SnmpDecodePacket does, so it is not used).
	communityDecoder *gosnmp.GoSNMP
	v3PlainDecoder   *gosnmp.GoSNMP

	answered     atomic.Uint64
	badCommunity atomic.Uint64
	usm          usmStats

	started   atomic.Bool
	startMu   sync.Mutex // serialises Start
	mu        sync.Mutex // guards closed and wg.Add
	closed    bool
	done      chan struct{}
	wg        sync.WaitGroup // fault timers
	closeOnce sync.Once
}

// New checks cfg and builds the agents without binding anything.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Versions = slices.Clone(cfg.Versions)
	cfg.Users = slices.Clone(cfg.Users)
	s := &Sim{
		cfg:              cfg,
		log:              cfg.Logger,
		now:              cfg.Now,
		mib:              newMIB(cfg.Interfaces),
		byName:           make(map[string]*Agent, cfg.Agents),
		communityDecoder: &gosnmp.GoSNMP{Version: gosnmp.Version2c},
		v3PlainDecoder:   &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel},
		done:             make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, v := range cfg.Versions {
		s.serve[map[string]gosnmp.SnmpVersion{meshmon.SNMPv1: gosnmp.Version1, meshmon.SNMPv2c: gosnmp.Version2c, meshmon.SNMPv3: gosnmp.Version3}[v]] = true
	}
	if s.serve[gosnmp.Version3] {
		for _, u := range cfg.Users {
			s.users = append(s.users, newUSMUser(u))
		}
	}
	addrs, err := agentAddrs(cfg.BaseAddr, cfg.Agents)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	now := s.now()
	s.agents = make([]*Agent, cfg.Agents)
	for i := range s.agents {
		a := &Agent{
			sim:      s,
			mib:      mibView{shared: s.mib},
			index:    i + 1,
			name:     deviceName(cfg.NamePrefix, i+1, cfg.Agents),
			bindAddr: addrs[i],
			engineID: engineID(seed, i+1),
			boots:    1,
			ifs:      make([]ifState, cfg.Interfaces),
			done:     make(chan struct{}),
		}
		for j := range a.ifs {
			a.ifs[j].inRate, a.ifs[j].outRate = ifRates(i+1, j+1)
		}
		a.reset(now)
		a.salt.Store(uint64(seed[0])<<56 | uint64(i)<<24)
		if len(s.users) > 0 {
			a.keys = make([]userKeys, len(s.users))
			for k := range s.users {
				if a.keys[k], err = s.users[k].localize(a.engineID); err != nil {
					return nil, fmt.Errorf("new agent %s: %w", a.name, err)
				}
			}
		}
		s.agents[i] = a
		s.byName[a.name] = a
	}
	if cfg.Topology != TopologyNone {
		for _, a := range s.agents {
			a.mib.own = &mib{leaves: s.neighborLeaves(a)}
		}
	}
	return s, nil
}

// ifRates returns deterministic per-interface rates between 1 and 10 Mbit/s
// (in bytes per second), different for in and out.
func ifRates(agent, ifIndex int) (in, out uint64) {
	h := uint64(agent)*0x9E3779B97F4A7C15 ^ uint64(ifIndex)*0xC2B2AE3D27D4EB4F
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 32
	const lo, span = 125_000, 1_125_000 // 1 Mbit/s .. 10 Mbit/s
	return lo + h%span, lo + (h>>20)%span
}

// Start binds every agent's socket, or the one they share
// (Config.SharedSocket), and starts serving. If a bind fails it closes what
// it bound and returns an error naming the address. ctx bounds the binding
// only; the agents run until Close.
func (s *Sim) Start(ctx context.Context) error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.started.Load() {
		return errors.New("start simulator: already started")
	}
	select {
	case <-s.done:
		return fmt.Errorf("start simulator: %w", ErrClosed)
	default:
	}
	if s.cfg.SharedSocket && sharedSupported {
		return s.startShared()
	}
	bound := 0
	fail := func(err error) error {
		for _, a := range s.agents[:bound] {
			_ = a.Close()
		}
		return err
	}
	for _, a := range s.agents {
		if err := ctx.Err(); err != nil {
			return fail(fmt.Errorf("start simulator: %w", err))
		}
		addr := netip.AddrPortFrom(a.bindAddr, uint16(s.cfg.Port))
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			hint := ""
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				hint = " (one socket per agent: raise the open-files limit, ulimit -n, or let the agents share a socket)"
			}
			return fail(fmt.Errorf("start simulator: bind agent %s on %s: %w%s", a.name, addr, err, hint))
		}
		a.conn = conn
		a.addr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
		a.addr = netip.AddrPortFrom(a.addr.Addr().Unmap(), a.addr.Port())
		bound++
	}
	for _, a := range s.agents {
		a.wg.Add(1)
		go a.serve()
	}
	s.started.Store(true)
	s.log.Info("sim: started", "agents", len(s.agents), "first", s.agents[0].addr, "last", s.agents[len(s.agents)-1].addr)
	return nil
}

// startShared binds the socket the agents share and starts its readers:
// as many as there are CPUs, each answering what it read before it reads
// again (answers held back by SetDelay wait on their own goroutines).
func (s *Sim) startShared() error {
	// The wildcard binds whatever the addresses are; a datagram to one that
	// is not local would never arrive, so each is bound once to check
	// (all of 127.0.0.0/8 is local on Linux).
	for _, a := range s.agents {
		if a.bindAddr.IsLoopback() {
			continue
		}
		addr := netip.AddrPortFrom(a.bindAddr, 0)
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return fmt.Errorf("start simulator: agent %s: address %s is not local: %w", a.name, addr, err)
		}
		_ = c.Close()
	}
	c, err := listenShared(s.cfg.Port)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (the agents share one socket on the wildcard address: another socket holds that port on some address; choose another port)"
		}
		return fmt.Errorf("start simulator: bind the agents' shared socket on 0.0.0.0:%d: %w%s", s.cfg.Port, err, hint)
	}
	s.shared = c
	s.byAddr = make(map[netip.Addr]*Agent, len(s.agents))
	port := c.port()
	for _, a := range s.agents {
		a.addr = netip.AddrPortFrom(a.bindAddr, port)
		s.byAddr[a.bindAddr] = a
	}
	for range max(2, runtime.GOMAXPROCS(0)) {
		s.readers.Add(1)
		go s.serveShared()
	}
	s.started.Store(true)
	s.log.Info("sim: started", "agents", len(s.agents), "shared_socket", true, "port", port,
		"first", s.agents[0].addr, "last", s.agents[len(s.agents)-1].addr)
	return nil
}

// serveShared reads requests from the shared socket until it is closed and
// hands each to the agent at its destination address. Datagrams to other
// addresses on the port are dropped.
func (s *Sim) serveShared() {
	defer s.readers.Done()
	buf := make([]byte, maxRequestSize)
	for {
		n, from, dst, err := s.shared.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.done:
				return
			default:
			}
			s.log.Debug("sim: read shared socket", "err", err)
			continue
		}
		a := s.byAddr[dst]
		if a == nil {
			s.log.Debug("sim: datagram for no agent, dropped", "to", dst, "from", from)
			continue
		}
		a.receive(buf, n, from)
	}
}

// Started reports whether Start has bound the agents.
func (s *Sim) Started() bool { return s.started.Load() }

// Close stops every agent and fault timer and waits for their goroutines.
// It is idempotent.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		s.startMu.Lock() // a concurrent Start finishes first
		defer s.startMu.Unlock()
		if s.shared != nil {
			_ = s.shared.Close()
			s.readers.Wait()
		}
		var wg sync.WaitGroup
		for part := range slices.Chunk(s.agents, 256) {
			wg.Go(func() {
				for _, a := range part {
					_ = a.Close()
				}
			})
		}
		wg.Wait()
		s.wg.Wait()
	})
	return nil
}

// Agents returns the agents in order of their names and addresses.
func (s *Sim) Agents() []*Agent { return slices.Clone(s.agents) }

// Agent returns the agent with that device name, or nil.
func (s *Sim) Agent(name string) *Agent { return s.byName[name] }

// Config returns the configuration the Sim was built with.
func (s *Sim) Config() Config { return s.cfg }

// Answered returns how many responses all agents have sent.
func (s *Sim) Answered() uint64 { return s.answered.Load() }

func (s *Sim) serves(v gosnmp.SnmpVersion) bool { return int(v) < len(s.serve) && s.serve[v] }

func (s *Sim) userIndex(name string) int {
	for i := range s.users {
		if s.users[i].name == name {
			return i
		}
	}
	return -1
}
