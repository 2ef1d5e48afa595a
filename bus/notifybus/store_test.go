package notifybus_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshmon/meshmon/notify"
)

// TestChannelsSayWhetherASecretIsSet: the listing has every channel by
// name, and of each only whether its secret is set; none is an empty list.
func TestChannelsSayWhetherASecretIsSet(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := e.st.Channels(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no channels: %v, %v; want an empty list", got, err)
	}
	e.webhook(t, "ops", "http://192.0.2.1/hook", "s3cret", 0, 1)
	email := notify.Channel{Name: "mail", Type: notify.TypeEmail, SMTP: "192.0.2.2:587", From: "a@example.com", To: []string{"b@example.com"}, Burst: 1}
	if err := e.st.PutChannel(ctx, email, nil, false); err != nil {
		t.Fatal(err)
	}
	got, err := e.st.Channels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "mail" || got[0].SecretSet || got[1].Name != "ops" || !got[1].SecretSet {
		t.Errorf("channels: %+v, want mail without a secret, then ops with one", got)
	}
}
