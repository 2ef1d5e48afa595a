package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/meshmon/meshmon/tenancy"
)

// A NOC user may name its consumers only with its own names
// (tenancy.ConsumerNames): JetStream takes a consumer's name from the
// request subject, which its permissions allow for those names only. So a
// connection that speaks for a tenant user makes its consumers with those
// names, taking the first one free, and removes them when done.

// consumerOwner is the tenant user that js's connection speaks for, from
// its inbox prefix (tenancy.InboxPrefix, set at connect from the
// credentials); empty when it speaks for none.
func consumerOwner(js jetstream.JetStream) string {
	u, ok := strings.CutPrefix(js.Conn().Opts.InboxPrefix, "_INBOX.")
	if !ok || u == "" || strings.Contains(u, ".") {
		return ""
	}
	return u
}

// createOwned creates a consumer of stream with cfg under the first of
// owner's consumer names that is free.
func createOwned(ctx context.Context, js jetstream.JetStream, stream, owner string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	// A description of its own makes the config differ from any other's,
	// so a name in use is refused, not shared.
	cfg.Description = "meshmon " + owner + " " + nuid.Next()
	for _, name := range tenancy.ConsumerNames(owner) {
		cfg.Name, cfg.Durable = name, ""
		c, err := js.CreateConsumer(ctx, stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			continue
		}
		return c, err
	}
	return nil, fmt.Errorf("consumer on %s: %w: user %s has %d consumers there already (names %s to %s)", stream, ErrNoConsumerName,
		owner, tenancy.ConsumerSlots, owner, tenancy.ConsumerNames(owner)[tenancy.ConsumerSlots-1])
}

// deleteOwned removes a consumer made by createOwned (or another that its
// maker is done with), within a second even when ctx is done.
func deleteOwned(ctx context.Context, js jetstream.JetStream, stream string, c jetstream.Consumer) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = js.DeleteConsumer(dctx, stream, c.CachedInfo().Name)
}

// dropConsumer asks the server to remove a consumer its maker is done
// with, and does not wait for the answer: a user who may not delete
// consumers (a read-only one on a stock server) is not held up by a
// request that nobody answers, and its consumer goes after its inactive
// threshold instead.
func dropConsumer(js jetstream.JetStream, stream, name string) {
	_ = js.Conn().Publish(apiPrefix(js)+"CONSUMER.DELETE."+stream+"."+name, nil)
}

// apiPrefix is the JetStream API prefix js sends its requests under, with
// its trailing dot.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}
