package wan

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo serves on a free loopback port, echoing each line back.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) error {
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := r.ReadString('\n')
	return err
}

// TestDrop: a silent cut keeps a connection open but loses what it carries,
// refuses new ones, and closes the old ones when it ends; the proxy then
// carries new connections again.
func TestDrop(t *testing.T) {
	px, err := NewProxy(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	c, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := roundTrip(c, r, 5*time.Second); err != nil {
		t.Fatalf("before the cut: %v", err)
	}

	px.Drop(true)
	if err := roundTrip(c, r, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("during the cut: %v, want the line lost (a read timeout)", err)
	}
	if n, err := net.Dial("tcp", px.Addr()); err == nil {
		_ = n.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := n.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a new connection during the cut: %v, want it closed", err)
		}
		n.Close()
	}

	px.Drop(false)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection that lived through the cut: %v, want it closed", err)
	}
	n, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := roundTrip(n, bufio.NewReader(n), 5*time.Second); err != nil {
		t.Fatalf("after the cut: %v", err)
	}
}
