package poller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/gosnmp/gosnmp"

	"github.com/meshmon/meshmon"
)

// The on-demand SNMP operations of tasks (walk, get), on a prober of their
// own: they never share the scheduled poll's client.

// oidIfNumber is IF-MIB ifNumber.0, how many interfaces an agent has.
const oidIfNumber = "1.3.6.1.2.1.2.1.0"

// session opens a client for one task operation, bound to ctx: a
// cancelled ctx closes its socket, which ends a pending read at once. The
// returned close must be called.
func (p *SNMPProber) session(ctx context.Context) (*gosnmp.GoSNMP, func(), error) {
	c, err := p.newClient()
	if err != nil {
		return nil, nil, err
	}
	c.Context = ctx
	if err := c.Connect(); err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", net.JoinHostPort(c.Target, strconv.Itoa(int(c.Port))), err)
	}
	conn := c.Conn
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	return c, func() { stop(); _ = conn.Close() }, nil
}

// snmpTaskError classifies the error of a task operation: the same short
// reasons as a poll's.
func snmpTaskError(ctx context.Context, what string, err error) error {
	reason, err := classifySNMPError(ctx, err)
	return fmt.Errorf("%s: %s: %w", what, reason, err)
}

// Walk walks the subtree of root, calling fn for each object in order; it
// uses GETBULK except with SNMPv1. An error of fn ends the walk with it.
func (p *SNMPProber) Walk(ctx context.Context, root string, fn func(meshmon.Varbind) error) error {
	c, done, err := p.session(ctx)
	if err != nil {
		return snmpTaskError(ctx, "walk", err)
	}
	defer done()
	var fnErr error
	walk := func(v gosnmp.SnmpPDU) error {
		if fnErr = fn(renderVarbind(v)); fnErr != nil {
			return fnErr
		}
		return nil
	}
	root = strings.TrimPrefix(root, ".")
	if c.Version == gosnmp.Version1 {
		err = c.Walk(root, walk)
	} else {
		c.MaxRepetitions = uint32(min(p.bulkVarbinds, 50))
		err = c.BulkWalk(root, walk)
	}
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return snmpTaskError(ctx, "walk", err)
	}
	return nil
}

// Get reads oids in one GET.
func (p *SNMPProber) Get(ctx context.Context, oids []string) ([]meshmon.Varbind, error) {
	c, done, err := p.session(ctx)
	if err != nil {
		return nil, snmpTaskError(ctx, "get", err)
	}
	defer done()
	trimmed := make([]string, len(oids))
	for i, o := range oids {
		trimmed[i] = strings.TrimPrefix(o, ".")
	}
	pkt, err := c.Get(trimmed)
	if err != nil {
		return nil, snmpTaskError(ctx, "get", err)
	}
	if pkt.Error != gosnmp.NoError {
		return nil, fmt.Errorf("get: error status %s (varbind %d)", pkt.Error, pkt.ErrorIndex)
	}
	out := make([]meshmon.Varbind, 0, len(pkt.Variables))
	for _, v := range pkt.Variables {
		out = append(out, renderVarbind(v))
	}
	return out, nil
}

// Identify reads what a discovery shows of an agent: sysName, sysObjectID,
// sysDescr and ifNumber.
func (p *SNMPProber) Identify(ctx context.Context) (meshmon.Candidate, error) {
	c, done, err := p.session(ctx)
	if err != nil {
		return meshmon.Candidate{}, snmpTaskError(ctx, "identify", err)
	}
	defer done()
	var res SNMPResult
	if err := p.getSystem(c, &res); err != nil {
		return meshmon.Candidate{}, snmpTaskError(ctx, "identify", err)
	}
	cand := meshmon.Candidate{Address: p.dev.Address, SNMP: true, SysName: res.SysName,
		SysObjectID: res.SysObjectID, SysDescr: res.SysDescr, Version: p.dev.SNMP.Version}
	if pkt, err := c.Get([]string{oidIfNumber}); err == nil && pkt.Error == gosnmp.NoError && len(pkt.Variables) == 1 {
		cand.Interfaces = int(toInt64(pkt.Variables[0].Value))
	} else if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return meshmon.Candidate{}, snmpTaskError(ctx, "identify", err)
	}
	return cand, nil
}
