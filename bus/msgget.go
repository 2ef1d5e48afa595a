package bus

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MsgGetRequest is JetStream's stream message get request, in the fields
// meshmon uses (nats.go's GetMsg has no start time).
type MsgGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// StoredMsg is a message as the message get request answers it.
type StoredMsg struct {
	Subject  string      `json:"subject"`
	Sequence uint64      `json:"seq"`
	Raw      []byte      `json:"hdrs"`
	Time     time.Time   `json:"time"`
	Header   nats.Header `json:"-"`
}

// GetStoredMsg asks the local JetStream for one message of stream; nil
// when there is none.
func GetStoredMsg(ctx context.Context, nc *nats.Conn, stream string, req MsgGetRequest) (*StoredMsg, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, b)
	if err != nil {
		return nil, err
	}
	return ReadStoredMsg(m.Data)
}

// ReadStoredMsg reads an answer to a stream message get (from any
// domain's API); nil when the stream holds no such message.
func ReadStoredMsg(data []byte) (*StoredMsg, error) {
	var resp struct {
		Message *StoredMsg `json:"message"`
		Error   *struct {
			Code        int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, err
	}
	switch {
	case resp.Error != nil && resp.Error.Code == int(jetstream.JSErrCodeMessageNotFound):
		return nil, nil
	case resp.Error != nil:
		return nil, errors.New(resp.Error.Description)
	case resp.Message == nil:
		return nil, errors.New("no message in the answer")
	}
	if len(resp.Message.Raw) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Raw)
		if err != nil {
			return nil, err
		}
		resp.Message.Header = h
	}
	return resp.Message, nil
}
