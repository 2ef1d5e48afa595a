package sim

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the simulator's own Prometheus metrics (`meshmon sim
// --metrics-listen`, docs/metrics.md), read at scrape time.
func (s *Sim) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshmon_sim_agents", Help: "Simulated SNMP agents."},
			func() float64 { return float64(len(s.agents)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meshmon_sim_requests_answered_total", Help: "SNMP requests the agents answered."},
			func() float64 { return float64(s.Answered()) }),
	}
}
