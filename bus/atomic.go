package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// PublishAtomic publishes msgs (1 to DefaultMaxAtomic, all for one stream
// that allows atomic publish, headers such as Nats-Msg-Id set by the
// caller) as one atomic batch and waits for its commit: all are stored, and
// synced, as one unit, or none (see PublishBatch for the figures).
func PublishAtomic(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	id := nuid.Next()
	last := len(msgs) - 1
	for i, m := range msgs {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i == last {
			m.Header.Set(hdrBatchCommit, "1")
			break
		}
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
	}
	resp, err := nc.RequestMsgWithContext(ctx, msgs[last])
	for _, m := range msgs { // the caller may publish them again one by one
		m.Header.Del(hdrBatchID)
		m.Header.Del(hdrBatchSeq)
		m.Header.Del(hdrBatchCommit)
	}
	if err != nil {
		return err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fmt.Errorf("decode batch ack: %w", err)
	}
	if ack.Error != nil {
		return fmt.Errorf("%w: %w", ErrAtomicRefused, ack.Error)
	}
	if ack.Count != len(msgs) {
		return fmt.Errorf("batch ack counts %d messages, want %d", ack.Count, len(msgs))
	}
	return nil
}

// AllowAtomic turns atomic publish on for the stream name (a KV bucket's
// KV_<bucket>), if it is not yet.
func AllowAtomic(ctx context.Context, js jetstream.JetStream, name string) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("allow atomic publish on %s: %w", name, err)
	}
	return nil
}
