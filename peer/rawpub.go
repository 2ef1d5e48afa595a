package peer

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// rawAuth is how a raw in-process connection (publishRaw) authenticates:
// as a user signed by an account key (jwt and the user's key kp), as an
// nkey user (kp alone), or not at all (neither).
type rawAuth struct {
	jwt string
	kp  nkeys.KeyPair
}

// publishRaw publishes, over a new in-process connection to srv, an empty
// message with the header block hdr, exactly as given, on each of
// subjects, and returns once the server has taken them (its PONG after),
// or within has passed. It exists for what nats.go cannot send: a header
// block that opens with a status line (nats.go opens every one with a bare
// "NATS/1.0"). hdr ends with the blank line that ends a header block.
func publishRaw(srv *server.Server, auth rawAuth, name, hdr string, subjects []string, within time.Duration) error {
	conn, err := srv.InProcessConn()
	if err != nil {
		return fmt.Errorf("raw in-process connection: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(within)); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("raw in-process connection: the server's INFO: %w", err)
	}
	infoJSON, ok := strings.CutPrefix(line, "INFO ")
	if !ok {
		return fmt.Errorf("raw in-process connection: the server sent %q, not its INFO", strings.TrimSpace(line))
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(infoJSON), &info); err != nil {
		return fmt.Errorf("raw in-process connection: the server's INFO: %w", err)
	}
	connect := map[string]any{"verbose": false, "pedantic": false, "headers": true, "protocol": 1, "lang": "go", "name": name}
	if auth.kp != nil {
		sig, err := auth.kp.Sign([]byte(info.Nonce))
		if err != nil {
			return fmt.Errorf("raw in-process connection: sign the nonce: %w", err)
		}
		connect["sig"] = base64.RawURLEncoding.EncodeToString(sig)
		if auth.jwt != "" {
			connect["jwt"] = auth.jwt
		} else if pub, err := auth.kp.PublicKey(); err == nil {
			connect["nkey"] = pub
		}
	}
	cj, _ := json.Marshal(connect)
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s\r\n", cj)
	for _, subj := range subjects {
		fmt.Fprintf(&b, "HPUB %s %d %d\r\n%s\r\n", subj, len(hdr), len(hdr), hdr)
	}
	b.WriteString("PING\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return fmt.Errorf("raw in-process connection: write: %w", err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("raw in-process connection: no PONG: %w", err)
		}
		switch line = strings.TrimSpace(line); {
		case line == "PONG":
			return nil
		case line == "PING":
			if _, err := conn.Write([]byte("PONG\r\n")); err != nil {
				return err
			}
		case strings.HasPrefix(line, "-ERR"):
			return errors.New("raw in-process connection: the server answered " + line)
		}
	}
}
