package bus

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/backoff"
)

// The mesh: each site peer keeps its own EVENTS and METRICS in its own
// JetStream domain (the site name); central (domain HubDomain) keeps streams
// of the same names that source every site's streams over the leaf link the
// site dialled. Sourcing goes through a durable push consumer that the site
// keeps on each of its streams (SourceConsumer), so after a cut or a central
// restart central resumes from the last sequence it holds within a second or
// a few, not after the 22-45 s an ephemeral source consumer can take
// (DESIGN.md, NATS facts).

// HubDomain is central's JetStream domain.
const HubDomain = "hub"

// Central KV buckets.
const (
	// SitesBucket lists the sites central sources, keyed by site name.
	SitesBucket = "sites"
	// CentralBucket holds what a site needs to join: per central peer, the
	// URL sites dial ("leaf.<server>"), and the tenant's leaf credential.
	CentralBucket = "central"
)

// SourceConsumer is the durable consumer on a site's stream through which
// central sources it.
func SourceConsumer(stream string) string { return "central-" + strings.ToLower(stream) }

// SourceDeliverSubject is where a site's source consumer delivers: a subject
// unique to the site and stream, which crosses the leaf link to central.
func SourceDeliverSubject(site, stream string) string {
	return SourceDeliverPrefix + site + "." + strings.ToLower(stream)
}

// RefetchConsumer is the site's second durable consumer on stream, idle
// but for a moment: central sources through it, from the first event it
// lost after acknowledging it, what it lost (peer's tail watch;
// SourceThrough). A source through another consumer is another source to
// nats-server, with a position of its own: it takes what the site's own
// source, which resumed past them, no longer would.
func RefetchConsumer(stream string) string { return SourceConsumer(stream) + "-refetch" }

// RefetchDeliverSubject is where a site's RefetchConsumer delivers.
func RefetchDeliverSubject(site, stream string) string {
	return SourceDeliverSubject(site, stream) + "-refetch"
}

// SourceDeliverPrefix begins every site's SourceDeliverSubject.
const SourceDeliverPrefix = "meshmon.source."

// sourceBatch bounds the messages a source consumer has in flight before
// central's flow control answers (its only ack: AckFlowControl).
//
// Central keeps one queue for all the sources of a stream (nats-server
// 2.15.3), and a consumer whose byte window has grown to its 32 MiB
// delivers a site's whole backlog into it at once: after a cut, central
// then stored the sites' backlogs one after another, and the last site
// resumed 2-3 s after the links returned. At 5,000 the sites' deliveries
// take turns in that queue: every site resumed about 1 s after (0.6-1.6 s),
// the first within 0.75 s (`meshmon bench mesh`, docs/performance.md). It also bounds
// what central holds in that queue when many sites return at once (5,000
// events a site, where the window allows 32 MiB), and keeps the
// consumer's ack floor within 5,000 of what central stored, so that a site
// sends again less of what central has after a cut (20,000 events a site
// in the bench's cuts that came right after a catch-up).
//
// The cost, if any, is the catch-up's rate: on 2 cores it was a sixth
// lower than with 100,000 after 2 s cuts, and no lower after 30 s cuts
// (where the medians were 23,165 against 21,413 events/s). And at the
// count a consumer stops until central answers; one left at its limit with
// no request out waits for its next idle heartbeat, up to a second
// (nats-server 2.15.3). At 10,000 that delayed a site's first events up
// to 1.07 s after a catch-up; it was not seen at 5,000 in the runs of
// 2026-12-06. A site's peer updates its consumers at its start.
const sourceBatch = 5_000

// SourceMaxAckPending is the MaxAckPending a site's source consumers are
// made with (sourceBatch); a keeper's prompt raises it for a moment.
const SourceMaxAckPending = sourceBatch

// EnsureSourceConsumers creates, at a site, the durable consumers central
// sources EVENTS and METRICS through (SourceConsumer, RefetchConsumer). It
// is idempotent; a site peer calls it on every start.
func EnsureSourceConsumers(ctx context.Context, js jetstream.JetStream, site string) error {
	if err := meshmon.ValidateName("site", site); err != nil {
		return err
	}
	for _, name := range []string{EventsStream, MetricsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("source consumer on %s: %w", name, err)
		}
		for _, c := range []struct{ name, deliver, what string }{
			{SourceConsumer(name), SourceDeliverSubject(site, name), "central sources this stream through this consumer"},
			{RefetchConsumer(name), RefetchDeliverSubject(site, name), "central fetches again through this consumer what it lost of this stream"},
		} {
			_, err = s.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{
				Durable:        c.name,
				Description:    c.what,
				DeliverSubject: c.deliver,
				DeliverPolicy:  jetstream.DeliverAllPolicy,
				AckPolicy:      jetstream.AckFlowControlPolicy,
				FlowControl:    true,
				IdleHeartbeat:  time.Second, // the server requires exactly 1s
				MaxAckPending:  sourceBatch,
			})
			if err != nil {
				return fmt.Errorf("source consumer %s on %s: %w", c.name, name, err)
			}
		}
	}
	return nil
}

// PromptSourceConsumer raises by one the MaxAckPending of the site's source
// consumer of stream if the consumer sits at it. Such a consumer delivers
// one more message and, unless a flow-control request of its own is still
// out, asks central for flow control with it, rather than at its next
// heartbeat: a site's keeper prompts a consumer whose stall central has
// just answered (peer.keepAccount). The raise goes no further than
// promptRaiseMax over sourceBatch; RestoreSourceConsumer takes it back. It
// reports whether it raised the limit.
func PromptSourceConsumer(ctx context.Context, js jetstream.JetStream, stream string) (bool, error) {
	return setSourceLimit(ctx, js, stream, func(info *jetstream.ConsumerInfo) int {
		limit := info.Config.MaxAckPending
		if limit <= 0 || info.NumAckPending < limit || limit >= sourceBatch+promptRaiseMax {
			return 0
		}
		return limit + 1
	})
}

// RestoreSourceConsumer sets the MaxAckPending of the site's source consumer
// of stream back to sourceBatch once it has fewer deliveries awaiting
// central than that, after PromptSourceConsumer. It reports whether the
// limit is sourceBatch again.
func RestoreSourceConsumer(ctx context.Context, js jetstream.JetStream, stream string) (bool, error) {
	var back bool
	set, err := setSourceLimit(ctx, js, stream, func(info *jetstream.ConsumerInfo) int {
		back = info.Config.MaxAckPending == sourceBatch
		if back || info.NumAckPending >= sourceBatch {
			return 0
		}
		return sourceBatch
	})
	return back || set, err
}

// setSourceLimit sets the MaxAckPending of the site's source consumer of
// stream to what limit returns for its info, unless that is 0. It reports
// whether it set it.
func setSourceLimit(ctx context.Context, js jetstream.JetStream, stream string, limit func(*jetstream.ConsumerInfo) int) (bool, error) {
	c, err := js.PushConsumer(ctx, stream, SourceConsumer(stream))
	if err != nil {
		return false, err
	}
	info := c.CachedInfo()
	n := limit(info)
	if n == 0 {
		return false, nil
	}
	cfg := info.Config
	cfg.MaxAckPending = n
	if _, err := js.UpdatePushConsumer(ctx, stream, cfg); err != nil {
		return false, err
	}
	return true, nil
}

// promptRaiseMax bounds PromptSourceConsumer's raises over sourceBatch
// before RestoreSourceConsumer takes them back: a site's keeper prompts on
// the stall answers to every site's consumers of its account.
const promptRaiseMax = sourceBatch / 10

// SiteRecord is one site in central's SitesBucket.
type SiteRecord struct {
	Name  string    `json:"name"`
	Added time.Time `json:"added"`
}

// JoinInfo is what central tells a new site: where to dial and with what.
type JoinInfo struct {
	Tenant   string   `json:"tenant"`
	Central  []string `json:"central"` // leaf URLs, nats-leaf://host:port
	User     string   `json:"user,omitempty"`
	Password string   `json:"password,omitempty"`
	// Creds is the tenant's leaf user credentials (a .creds file's
	// content), instead of User and Password, when central runs in
	// operator mode. The site then runs in operator mode too, with the
	// rest: the operator's JWT and system account, the tenant's account
	// JWT and the credentials the site peer makes its streams with.
	Creds         string `json:"creds,omitempty"`
	Operator      string `json:"operator,omitempty"`
	SystemAccount string `json:"system_account,omitempty"`
	// Preload holds the system account's JWT, by public key.
	Preload     map[string]string `json:"preload,omitempty"`
	Account     string            `json:"account,omitempty"`
	AccountJWT  string            `json:"account_jwt,omitempty"`
	UpkeepCreds string            `json:"upkeep_creds,omitempty"`
	// CA is the PEM of the CA central's certificate is of: the site pins
	// it and verifies central against it on its leaf link. Empty when
	// central runs without TLS (--insecure).
	CA string `json:"ca,omitempty"`
}

// EnsureCentral creates central's buckets and its EVENTS and METRICS
// streams, which take no subjects of their own and source every site in
// SitesBucket. It is idempotent; a central peer calls it on every start.
func EnsureCentral(ctx context.Context, js jetstream.JetStream, lim StreamLimits) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	for _, b := range []jetstream.KeyValueConfig{
		{Bucket: SitesBucket, Description: "meshmon sites that central sources, keyed by site name", History: 1, Storage: jetstream.FileStorage, Replicas: lim.replicas()},
		{Bucket: CentralBucket, Description: "meshmon central: leaf URLs and join credentials", History: 1, Storage: jetstream.FileStorage, Replicas: lim.replicas()},
	} {
		if err := ensureBucket(ctx, js, b); err != nil {
			return err
		}
	}
	sites, err := Sites(ctx, js)
	if err != nil {
		return err
	}
	names := make([]string, len(sites))
	for i, s := range sites {
		names[i] = s.Name
	}
	for _, cfg := range lim.streamConfigs() {
		// Live subscribers at central get each message as central
		// stores it, once, catch-up included, on the stored feed
		// (StoredPrefix; a site's own feed does not cross its link).
		cfg.Subjects = nil
		// The sites read above may be short of the truth: the bucket is
		// read through a consumer that nats-server may place on a
		// replica still catching up, a peer's own just after its
		// restart. Sources are only ever added here (editSources);
		// RemoveSite alone drops one. (Setting exactly what was read
		// dropped a site's sources after a central peer's SIGKILL and
		// restart, and central held none of its events from then on:
		// TestMeshFaults, CI of 2026-12-04.)
		cfg.Sources = siteSources(cfg.Name, names)
		if s, err := js.Stream(ctx, cfg.Name); err == nil {
			cfg.Sources = s.CachedInfo().Config.Sources
		}
		if err := ensureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	return addListedSources(ctx, js, names)
}

// addListedSources adds the sources of each of sites that central's
// streams lack and the sites bucket's leader still lists. The sites come
// from an earlier read, which a concurrent RemoveSite may have overtaken:
// RemoveSite deletes the entry before it lets go of the sources lock, and
// the edit is asked again under the lock, so a removed site is not sourced
// again. A site whose entry cannot be had from the leader is sourced: a
// source too many is mended by site rm, one too few loses events.
func addListedSources(ctx context.Context, js jetstream.JetStream, sites []string) error {
	return editSources(ctx, js, func(have []string) []string {
		out := slices.Clone(have)
		for _, site := range sites {
			if !slices.Contains(have, site) && siteListed(ctx, js, site) {
				out = append(out, site)
			}
		}
		return withSites(out)
	})
}

// siteListed tells whether the sites bucket's leader holds site, asked
// with a stream message get, which its leader alone answers (a KV get is a
// direct get, which any replica answers, one behind included). It is true
// when the leader's answer cannot be had within leaderInfoWait.
func siteListed(ctx context.Context, js jetstream.JetStream, site string) bool {
	ctx, cancel := context.WithTimeout(ctx, leaderInfoWait)
	defer cancel()
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + SitesBucket + "." + site})
	m, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.MSG.GET.KV_"+SitesBucket, req)
	if err != nil {
		return true
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
		} `json:"message"`
		Error *struct {
			ErrCode int `json:"err_code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return true
	}
	if resp.Error != nil {
		return resp.Error.ErrCode != int(jetstream.JSErrCodeMessageNotFound)
	}
	if resp.Message == nil || len(resp.Message.Header) == 0 {
		return true
	}
	h, err := nats.DecodeHeadersMsg(resp.Message.Header)
	return err != nil || !deleted(h)
}

// sourceSites lists the sites of a central stream's sources, in order.
func sourceSites(srcs []*jetstream.StreamSource) []string {
	out := make([]string, 0, len(srcs))
	for _, src := range srcs {
		site := sourceSite(src.External)
		if site == "" {
			site = src.Domain
		}
		out = append(out, site)
	}
	return out
}

// withSites returns sites with more added, sorted, each once.
func withSites(sites []string, more ...string) []string {
	out := slices.Concat(sites, more)
	slices.Sort(out)
	return slices.Compact(out)
}

// siteSources is the source list of a central stream for sites.
func siteSources(stream string, sites []string) []*jetstream.StreamSource {
	out := make([]*jetstream.StreamSource, 0, len(sites))
	for _, site := range sites {
		out = append(out, &jetstream.StreamSource{
			Name:     stream,
			Domain:   site,
			Consumer: &jetstream.StreamConsumerSource{Name: SourceConsumer(stream), DeliverSubject: SourceDeliverSubject(site, stream)},
		})
	}
	return out
}

// keepSources returns want with each site's source that have holds in its
// place: a site's source may be the one through its RefetchConsumer for a
// moment.
func keepSources(have, want []*jetstream.StreamSource) []*jetstream.StreamSource {
	out := slices.Clone(want)
	for i, w := range out {
		for _, h := range have {
			if sourceSite(h.External) == w.Domain {
				out[i] = h
			}
		}
	}
	return out
}

// SourceThrough sets the consumer central's stream sources each of sites
// through: the site's RefetchConsumer if refetch, else its own
// (SourceConsumer), in one update. To nats-server a source through
// another consumer is another source: it starts after the last message
// the stream holds through that consumer, from where the consumer stands
// (peer's tail watch resets it first). The change takes central's
// sources lock.
func SourceThrough(ctx context.Context, js jetstream.JetStream, stream string, sites []string, refetch bool) error {
	through := func(site string) jetstream.StreamConsumerSource {
		if refetch {
			return jetstream.StreamConsumerSource{Name: RefetchConsumer(stream), DeliverSubject: RefetchDeliverSubject(site, stream)}
		}
		return jetstream.StreamConsumerSource{Name: SourceConsumer(stream), DeliverSubject: SourceDeliverSubject(site, stream)}
	}
	unlock, err := lockSources(ctx, js)
	if err != nil {
		return err
	}
	defer unlock()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("central stream %s: %w", stream, err)
	}
	cfg := s.CachedInfo().Config
	changed := false
	for _, site := range sites {
		i := slices.IndexFunc(cfg.Sources, func(src *jetstream.StreamSource) bool { return sourceSite(src.External) == site })
		if i < 0 {
			return fmt.Errorf("central stream %s: no source from site %s", stream, site)
		}
		want := through(site)
		if c := cfg.Sources[i].Consumer; c != nil && *c == want {
			continue
		}
		src := *cfg.Sources[i]
		src.Consumer = &want
		cfg.Sources[i] = &src
		changed = true
	}
	if !changed {
		return nil
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("central stream %s: source sites %v through %s: %w", stream, sites, through("<site>").Name, err)
	}
	return nil
}

// sourceSite is the site of a central stream's source, from the API prefix
// of its external stream.
func sourceSite(ext *jetstream.ExternalStream) string {
	if ext == nil {
		return ""
	}
	return SourceSite(ext.APIPrefix)
}

// SourceSite is the site of a central stream's source from the API prefix
// of its external stream ("$JS.<site>.API").
func SourceSite(apiPrefix string) string {
	return strings.TrimSuffix(strings.TrimPrefix(apiPrefix, "$JS."), ".API")
}

// editSources changes the sources of each central stream to what edit
// returns for the sites it sources now, read from the stream's leader.
// Stream updates have no compare-and-set, so a change takes central's
// sources lock (lockSources) first, and an edit that changes nothing takes
// nothing. It reads each stream again after its update, until it holds
// what edit asks of it.
func editSources(ctx context.Context, js jetstream.JetStream, edit func([]string) []string) error {
	var unlock func()
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	for _, name := range []string{EventsStream, MetricsStream} {
		for try := 0; ; try++ {
			s, err := unheard(ctx, func() (jetstream.Stream, error) { return js.Stream(ctx, name) })
			if err != nil {
				return fmt.Errorf("central stream %s: %w (is this a central peer?)", name, err)
			}
			cfg := s.CachedInfo().Config
			have := sourceSites(cfg.Sources)
			want := edit(have)
			if slices.Equal(have, want) {
				break
			}
			if unlock == nil {
				if unlock, err = lockSources(ctx, js); err != nil {
					return err
				}
				try--
				continue // read again under the lock
			}
			if try == editSourcesTries {
				return fmt.Errorf("update sources of %s: still %v after %d updates, not %v", name, have, try, want)
			}
			cfg.Sources = keepSources(cfg.Sources, siteSources(name, want))
			_, err = unheard(ctx, func() (jetstream.Stream, error) { return js.UpdateStream(ctx, cfg) })
			if errors.Is(err, jetstream.ErrStreamSourceNotSupported) {
				// nats.go's word for an answer with other sources than
				// asked for: read again.
				continue
			}
			if err != nil {
				return fmt.Errorf("update sources of %s: %w", name, err)
			}
		}
	}
	return nil
}

// editSourcesTries bounds editSources' updates of one stream.
const editSourcesTries = 5

// The lock over central's streams' sources: a key in CentralBucket,
// created by its holder and deleted when done; one left by a holder that
// died is taken over once sourcesLockStale old.
const (
	sourcesLockKey   = "lock.sources"
	sourcesLockStale = 30 * time.Second
)

// lockSources takes the lock over central's sources, waiting while
// another holds it, and returns its release.
func lockSources(ctx context.Context, js jetstream.JetStream) (func(), error) {
	kv, err := unheard(ctx, func() (jetstream.KeyValue, error) { return js.KeyValue(ctx, CentralBucket) })
	if err != nil {
		return nil, fmt.Errorf("lock central's sources: %w", err)
	}
	release := func(rev uint64) func() {
		return func() {
			// Past a caller's deadline too: a lock left behind holds up
			// the next change by sourcesLockStale.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = unheardErr(dctx, func() error { return kv.Delete(dctx, sourcesLockKey, jetstream.LastRevision(rev)) })
		}
	}
	wait := backoff.New(20*time.Millisecond, 500*time.Millisecond)
	for {
		rev, err := unheard(ctx, func() (uint64, error) { return kv.Create(ctx, sourcesLockKey, nil) })
		if err == nil {
			return release(rev), nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("lock central's sources: %w", err)
		}
		if e, err := kv.Get(ctx, sourcesLockKey); err == nil && time.Since(e.Created()) > sourcesLockStale {
			if rev, err := kv.Update(ctx, sourcesLockKey, nil, e.Revision()); err == nil {
				return release(rev), nil
			}
		}
		if !wait.Wait(ctx) {
			return nil, fmt.Errorf("lock central's sources: another change holds it (%s in bucket %s): %w", sourcesLockKey, CentralBucket, ctx.Err())
		}
	}
}

// ValidateSite checks a site's name: a name (meshmon.ValidateName), and
// not HubDomain, central's JetStream domain.
func ValidateSite(site string) error {
	if err := meshmon.ValidateName("site", site); err != nil {
		return err
	}
	if site == HubDomain {
		return fmt.Errorf("site %q is reserved for central's JetStream domain", site)
	}
	return nil
}

// AddSite records site at central and starts sourcing its streams. It fails
// with an error wrapping ErrSiteExists if it is there already.
func AddSite(ctx context.Context, js jetstream.JetStream, site string, now time.Time) error {
	if err := ValidateSite(site); err != nil {
		return err
	}
	kv, err := unheard(ctx, func() (jetstream.KeyValue, error) { return js.KeyValue(ctx, SitesBucket) })
	if err != nil {
		return fmt.Errorf("add site %s: %w (is this a central peer?)", site, err)
	}
	b, _ := json.Marshal(SiteRecord{Name: site, Added: now.UTC()})
	_, err = unheard(ctx, func() (uint64, error) { return kv.Create(ctx, site, b) })
	exists := errors.Is(err, jetstream.ErrKeyExists)
	if err != nil && !exists {
		return fmt.Errorf("add site %s: %w", site, err)
	}
	// A site already known gets its sources too, should an earlier add
	// have stopped between the bucket and the streams.
	if err := editSources(ctx, js, func(have []string) []string { return withSites(have, site) }); err != nil {
		return fmt.Errorf("add site %s: %w", site, err)
	}
	if exists {
		return fmt.Errorf("add site %s: %w", site, ErrSiteExists)
	}
	return nil
}

// RemoveSite stops sourcing site and forgets it. What central already holds
// of it stays until the streams' limits age it out. It fails with an error
// wrapping ErrSiteNotFound if central does not know the site.
func RemoveSite(ctx context.Context, js jetstream.JetStream, site string) error {
	if err := meshmon.ValidateName("site", site); err != nil {
		return err
	}
	kv, err := unheard(ctx, func() (jetstream.KeyValue, error) { return js.KeyValue(ctx, SitesBucket) })
	if err != nil {
		return fmt.Errorf("remove site %s: %w (is this a central peer?)", site, err)
	}
	if _, err := kv.Get(ctx, site); errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("remove site %s: %w", site, ErrSiteNotFound)
	} else if err != nil {
		return fmt.Errorf("remove site %s: %w", site, err)
	}
	// Sources first: a remove that stops between the two leaves the site
	// known, and EnsureCentral sources it again, rather than a source of a
	// site central no longer lists.
	drop := func(have []string) []string {
		return slices.DeleteFunc(slices.Clone(have), func(s string) bool { return s == site })
	}
	if err := editSources(ctx, js, drop); err != nil {
		return fmt.Errorf("remove site %s: %w", site, err)
	}
	if err := kv.Delete(ctx, site); err != nil {
		return fmt.Errorf("remove site %s: %w", site, err)
	}
	return nil
}

// Sites lists the sites central sources, sorted by name.
func Sites(ctx context.Context, js jetstream.JetStream) ([]SiteRecord, error) {
	entries, err := readBucket(ctx, js, SitesBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("list sites: %w (is this a central peer?)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	out := make([]SiteRecord, 0, len(entries))
	for _, e := range entries {
		var r SiteRecord
		if err := json.Unmarshal(e.value, &r); err != nil {
			return nil, fmt.Errorf("list sites: decode %s: %w", e.key, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b SiteRecord) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// joinKey is a central peer's key in the join bucket.
func joinKey(server string) string { return "leaf." + server }

// PublishJoin records, for one central peer, the URL sites dial and the
// tenant's join credential.
func PublishJoin(ctx context.Context, js jetstream.JetStream, server string, info JoinInfo) error {
	kv, err := js.KeyValue(ctx, CentralBucket)
	if err != nil {
		return fmt.Errorf("publish join info: %w", err)
	}
	b, _ := json.Marshal(info)
	if _, err := kv.Put(ctx, joinKey(server), b); err != nil {
		return fmt.Errorf("publish join info: %w", err)
	}
	return nil
}

// Join returns what a site needs to join: every central peer's leaf URL and
// the tenant's credential.
func Join(ctx context.Context, js jetstream.JetStream) (JoinInfo, error) {
	kv, err := unheard(ctx, func() (jetstream.KeyValue, error) { return js.KeyValue(ctx, CentralBucket) })
	if err != nil {
		return JoinInfo{}, fmt.Errorf("join info: %w (is this a central peer?)", err)
	}
	keys, err := kv.ListKeysFiltered(ctx, "leaf.>")
	if err != nil {
		return JoinInfo{}, fmt.Errorf("join info: %w", err)
	}
	var out JoinInfo
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var ji JoinInfo
		if json.Unmarshal(e.Value(), &ji) != nil {
			continue
		}
		out.Tenant, out.User, out.Password = ji.Tenant, ji.User, ji.Password
		if ji.CA != "" {
			out.CA = ji.CA
		}
		for _, u := range ji.Central {
			if !slices.Contains(out.Central, u) {
				out.Central = append(out.Central, u)
			}
		}
	}
	if len(out.Central) == 0 {
		return JoinInfo{}, errors.New("join info: no central peer has published a leaf URL; start central peers with --leaf-listen")
	}
	slices.Sort(out.Central)
	return out, nil
}

// SiteLink is the state of one site as central sees it.
type SiteLink struct {
	Name string `json:"name"`
	// Up: central's source of the site's EVENTS heard from it within
	// linkDownAfter and reports no error.
	Up bool `json:"up"`
	// SinceContact is how long ago central last heard from the site's
	// source; negative when never.
	SinceContact time.Duration `json:"since_contact_ns"`
	// LagMessages is how many messages of the site (events and samples)
	// central does not hold yet: as the site's source consumers count them
	// when the site answers (AskSites; LagFrom "site"), else as central's
	// sources last heard while the link is up (LagFrom "central"); nil
	// (unknown) when the link is down and the site does not answer, never
	// a 0 that nobody measured.
	LagMessages *uint64 `json:"lag_messages"`
	LagFrom     string  `json:"lag_from,omitempty"`
	Error       string  `json:"error,omitempty"`
	// LastStored is when central stored the site's newest event, and
	// LastObserved when that event was observed at the site; the zero time
	// when central holds none.
	LastStored   time.Time `json:"last_stored,omitzero"`
	LastObserved time.Time `json:"last_observed,omitzero"`
}

// CentralPeer is one replica of central's EVENTS stream.
type CentralPeer struct {
	Name    string `json:"name"`
	Leader  bool   `json:"leader"`
	Current bool   `json:"current"`
	Lag     uint64 `json:"lag,omitempty"`
}

// linkDownAfter is how long a source may stay silent before its link counts
// as down: a durable source consumer sends a heartbeat every second.
const linkDownAfter = 3 * time.Second

// CentralStatus returns, at central, every site's link and the replicas of
// central's EVENTS stream (one, the peer itself, when not clustered).
func CentralStatus(ctx context.Context, js jetstream.JetStream) ([]SiteLink, []CentralPeer, error) {
	sites, err := Sites(ctx, js)
	if err != nil {
		return nil, nil, err
	}
	byName := make(map[string]*SiteLink, len(sites))
	links := make([]SiteLink, len(sites))
	for i, s := range sites {
		links[i] = SiteLink{Name: s.Name, SinceContact: -1}
		byName[s.Name] = &links[i]
	}
	var peers []CentralPeer
	centralLag := make(map[string]uint64, len(sites))
	for _, name := range []string{EventsStream, MetricsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, nil, fmt.Errorf("central stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		for _, src := range info.Sources {
			l := byName[sourceSite(src.External)]
			if l == nil {
				continue
			}
			centralLag[l.Name] += src.Lag
			if name == EventsStream {
				l.SinceContact = src.Active
				if src.Error != nil {
					l.Error = src.Error.Description
				}
				l.Up = src.Active >= 0 && src.Active < linkDownAfter && src.Error == nil
			}
		}
		if name == EventsStream {
			peers = centralPeers(info)
			for i := range links {
				l := &links[i]
				m, err := s.GetLastMsgForSubject(ctx, "ev."+l.Name+".>")
				if err != nil {
					continue // none yet
				}
				l.LastStored = m.Time
				var ev meshmon.Event
				if ReadEvent(m.Subject, m.Header, m.Data, &ev) == nil {
					l.LastObserved = ev.Time
				}
			}
		}
	}
	for i := range links {
		if l := &links[i]; l.Up {
			n := centralLag[l.Name]
			l.LagMessages, l.LagFrom = &n, "central"
		}
	}
	return links, peers, nil
}

// AskSites sets the lag of each of links to what its site's source
// consumers count, for each site that answers over its link within
// siteAsk; the others keep what CentralStatus found. It asks the sites'
// JetStream API, which a NOC's credential may not: a NOC's request would
// go unanswered, so its status does not ask.
func AskSites(ctx context.Context, js jetstream.JetStream, links []SiteLink) {
	for i := range links {
		l := &links[i]
		if n, ok := siteBacklog(ctx, js, l.Name); ok {
			l.LagMessages, l.LagFrom = &n, "site"
		}
	}
}

// siteAsk bounds how long CentralStatus waits for a site to answer.
const siteAsk = time.Second

// siteBacklog asks site, over its link, how many messages its source
// consumers have not had acknowledged by central (SourceBacklog); ok is
// false when the site does not answer within siteAsk.
func siteBacklog(ctx context.Context, js jetstream.JetStream, site string) (uint64, bool) {
	sjs, err := jetstream.NewWithDomain(js.Conn(), site)
	if err != nil {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, siteAsk)
	defer cancel()
	var n uint64
	for _, name := range []string{EventsStream, MetricsStream} {
		b, err := SourceBacklog(ctx, sjs, name)
		if err != nil {
			return 0, false
		}
		n += b
	}
	return n, true
}

func centralPeers(info *jetstream.StreamInfo) []CentralPeer {
	if info.Cluster == nil {
		return nil
	}
	out := []CentralPeer{{Name: info.Cluster.Leader, Leader: true, Current: info.Cluster.Leader != ""}}
	for _, r := range info.Cluster.Replicas {
		out = append(out, CentralPeer{Name: r.Name, Current: r.Current && !r.Offline, Lag: r.Lag})
	}
	return out
}

// KickSources sets again the sources from sites of central's stream: a
// source set again asks its site at once, and resumes after the last
// message the stream holds of it, so nothing is sent twice. A central peer
// kicks a source that is silent while its site is reachable: one stalled
// after a leader change was seen on nats-server 2.15.2, and one that failed
// during a WAN cut waits out a back-off of up to two minutes before it asks
// the site again.
func KickSources(ctx context.Context, js jetstream.JetStream, stream string, sites []string) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("central stream %s: %w", stream, err)
	}
	return resetSources(ctx, js, s.CachedInfo().Config, sites)
}

// ReadEvent decodes an event that central's (or a site's) EVENTS stored on
// subject, with the headers h it was stored with, and checks it against
// its subject (meshmon.CheckEvent) and, when it came through a source,
// against the site whose source brought it (FromSiteSource): a poller's
// credential may publish any body on its site's subjects, and a site's
// link may deliver any subject. Every reader that shows or acts on what an
// event says of its site, device and check reads it with ReadEvent.
func ReadEvent(subject string, h nats.Header, data []byte, ev *meshmon.Event) error {
	if err := meshmon.DecodeEvent(data, ev); err != nil {
		return err
	}
	if err := meshmon.CheckEvent(subject, ev); err != nil {
		return err
	}
	return checkSource(subject, h, ev.Data.Site)
}

// checkSource returns an error when the event stored on subject came
// through a source other than site's (FromSiteSource).
func checkSource(subject string, h nats.Header, site string) error {
	if ok, sourced := FromSiteSource(h, EventsStream, site); sourced && !ok {
		return fmt.Errorf("%w: %s: not from site %s's source (%s %q)", meshmon.ErrUntrustedEvent, subject, site, HdrStreamSource, h.Get(HdrStreamSource))
	}
	return nil
}

// ShowableEvent checks a message EVENTS stored on subject, with the
// headers h it was stored with, for a reader that shows it as it is
// (meshmon events tail): a message that came through a source must have
// come through the source of the site its subject names (FromSiteSource),
// and a body that decodes as an event must not say another site, device
// or kind than its subject. What a body leaves out it does not claim, and
// a body that is no event at all claims nothing beyond its subject: such
// a reader shows it raw. (The alarm processor holds an event to more:
// ReadEvent.)
func ShowableEvent(subject string, h nats.Header, data []byte) error {
	tok := strings.Split(subject, ".")
	if len(tok) > 1 {
		if err := checkSource(subject, h, tok[1]); err != nil {
			return err
		}
	}
	var ev meshmon.Event
	if len(tok) != 4 || meshmon.DecodeEvent(data, &ev) != nil {
		return nil
	}
	d := &ev.Data
	for _, f := range []struct{ field, body, subj string }{{"site", d.Site, tok[1]}, {"device", d.Device, tok[2]}, {"kind", d.Kind, tok[3]}} {
		if f.body != "" && f.body != f.subj {
			return fmt.Errorf("%w: %s: its %s is %q, its subject's %q", meshmon.ErrUntrustedEvent, subject, f.field, f.body, f.subj)
		}
	}
	return nil
}

// HdrStreamSource is the header nats-server puts on every message a
// stream stores from one of its sources: the source's index name first
// ("<stream>:<hash of its API prefix>:C=<hash of its consumer>"), then
// the message's sequence there and its subject.
const HdrStreamSource = "Nats-Stream-Source"

// FromSiteSource reports whether a message of central's stream came
// through site's source (ok), and whether it came through a source at
// all (sourced; a site's own streams source nothing). The subject a
// message carries is whatever the site's end of the link delivered; the
// source it came through is central's own.
//
// nats-server 2.15.3 names a source by its stream and the hash
// (getHash: sha256, 8 characters of base 62) of its external API prefix,
// "$JS.<site>.API" (siteSources); TestFromSiteSource holds it to that on
// a real server.
func FromSiteSource(h nats.Header, stream, site string) (ok, sourced bool) {
	v := h.Get(HdrStreamSource)
	if v == "" {
		return false, false
	}
	iname, _, _ := strings.Cut(v, " ")
	want := stream + ":" + serverHash("$JS."+site+".API")
	return iname == want || strings.HasPrefix(iname, want+":"), true
}

// SiteSourceSeq is the sequence, in site's own stream, of a message of
// central's stream that came through site's source (FromSiteSource); ok
// is false for any other message.
func SiteSourceSeq(h nats.Header, stream, site string) (seq uint64, ok bool) {
	if ok, _ := FromSiteSource(h, stream, site); !ok {
		return 0, false
	}
	// <source> <sequence> <filter> <transform> ... (nats-server 2.15.3,
	// stream.go, streamAndSeq)
	f := strings.Fields(h.Get(HdrStreamSource))
	if len(f) < 2 {
		return 0, false
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	return seq, err == nil && seq > 0
}

// serverHash is nats-server's getHash.
func serverHash(name string) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := sha256.Sum256([]byte(name))
	out := make([]byte, 8)
	for i := range out {
		out[i] = digits[int(b[i]%62)]
	}
	return string(out)
}
