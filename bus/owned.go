package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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

// ownedNames are the names the consumers of the tenant user js speaks for
// may have (tenancy.ConsumerNames); none when js speaks for no user.
func ownedNames(js jetstream.JetStream) []string {
	owner := consumerOwner(js)
	if owner == "" {
		return nil
	}
	return tenancy.ConsumerNames(owner)
}

// createOwned creates a consumer of stream with cfg under the first of
// owner's consumer names that is free.
func createOwned(ctx context.Context, js jetstream.JetStream, stream, owner string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return createNamed(ctx, js, stream, tenancy.ConsumerNames(owner), cfg)
}

// createNamed creates a consumer of stream with cfg under the first of
// names that is free.
func createNamed(ctx context.Context, js jetstream.JetStream, stream string, names []string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	// A description of its own makes the config differ from any other's,
	// so a name in use is refused, not shared.
	cfg.Description = "meshmon " + names[0] + " " + nuid.Next()
	for _, name := range names {
		cfg.Name, cfg.Durable = name, ""
		c, err := js.CreateConsumer(ctx, stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			continue
		}
		return c, err
	}
	return nil, fmt.Errorf("consumer on %s: %w: this user has %d consumers there already (names %s to %s)", stream, ErrNoConsumerName,
		len(names), names[0], names[len(names)-1])
}

// deleteOwned removes a consumer made by createOwned (or another that its
// maker is done with), within a second even when ctx is done.
func deleteOwned(ctx context.Context, js jetstream.JetStream, stream string, c jetstream.Consumer) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = js.DeleteConsumer(dctx, stream, c.CachedInfo().Name)
}

// dropWait bounds how long dropConsumer waits for the server's answer.
const dropWait = 2 * time.Second

// dropConsumer removes a consumer its maker is done with, and waits (at
// most dropWait, even when ctx is done) until the server answers, so that
// a command that exits right after has not closed its connection before
// the removal went out, leaving the consumer for its inactive threshold.
// A user who may not delete consumers (a read-only one on a stock server)
// is not held up: the server refuses its request at once, which the flush
// shows, and its consumer goes after its inactive threshold instead.
// Callers may ignore the error, which says why the removal is not known
// to be done: nats.ErrPermissionViolation for a refused request, else the
// failure to send it or to hear the answer in time.
func dropConsumer(ctx context.Context, js jetstream.JetStream, stream, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropWait)
	defer cancel()
	nc := js.Conn()
	subject := apiPrefix(js) + "CONSUMER.DELETE." + stream + "." + name
	sub, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, sub.Subject, nil); err != nil {
		return err
	}
	// The server handles a connection's messages in order: a refusal of
	// the request has come in by the flush's answer.
	if err := nc.FlushWithContext(ctx); err != nil {
		return err
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
		return err
	}
	_, err = sub.NextMsgWithContext(ctx)
	return err
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
