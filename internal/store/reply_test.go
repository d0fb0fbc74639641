package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/store"
)

// fakeRESP is a server that speaks RESP2 but answers every SET with reply, as a broken
// proxy, a store under another protocol or a server an attacker controls might: the only
// test here not against a real redis-server, because no real one answers so. It answers
// PING with +PONG so that health can come back, and refuses HELLO as a minimal ACL does.
func fakeRESP(t *testing.T, reply string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveRESP(c, reply)
		}
	}()
	return l.Addr().String()
}

func serveRESP(c net.Conn, reply string) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		out := reply
		switch {
		case len(args) == 0:
		case strings.EqualFold(args[0], "PING"):
			out = "+PONG\r\n"
		case strings.EqualFold(args[0], "HELLO"):
			// go-redis says HELLO 2 on every new connection and goes on without it when
			// refused, as behind a minimal ACL (docs/fleet.md).
			out = "-NOPERM this user has no permissions to run the 'hello' command\r\n"
		}
		if _, err := io.WriteString(c, out); err != nil {
			return
		}
	}
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("not an array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 || n > 64 {
		return nil, fmt.Errorf("array length %q", line)
	}
	args := make([]string, 0, n)
	for range n {
		hdr, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(hdr, "$")))
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bulk length %q", hdr)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

// A claim is fresh only when the server says OK to SET NX, and seen only on its nil reply:
// any other answer (an integer, another status, an empty string, an array) is not a claim
// and fails closed, as a store that cannot be reached does. Before, every reply that was not
// an error or nil read as Fresh: a proxy or server answering "+QUEUED" or ":1" let every
// replayed proof through at every instance.
func TestClaimUnexpectedReplyFailsClosed(t *testing.T) {
	for _, reply := range []string{
		":1\r\n", ":0\r\n", "+QUEUED\r\n", "+ok\r\n", "$0\r\n\r\n", "*0\r\n", "*1\r\n+OK\r\n",
	} {
		t.Run(strings.TrimSpace(reply), func(t *testing.T) {
			c, health := newClient(t, fakeRESP(t, reply), store.Options{Timeout: time.Second})
			got, err := c.ClaimProof(context.Background(), "jkt", "jti", time.Minute)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("reply %q: claim = %v, %v; want ErrUnavailable", reply, got, err)
			}
			if up := <-health; up || c.Up() {
				t.Errorf("reply %q: the store is still up", reply)
			}
			if strings.Contains(err.Error(), "jti") || strings.Contains(err.Error(), "jkt") {
				t.Errorf("the error names the key material: %v", err)
			}
		})
	}
	// The two answers a real server gives still mean what they mean.
	c, _ := newClient(t, fakeRESP(t, "+OK\r\n"), store.Options{Timeout: time.Second})
	if got, err := c.ClaimProof(context.Background(), "jkt", "jti", time.Minute); err != nil || got != store.Fresh {
		t.Errorf("+OK: %v, %v; want Fresh", got, err)
	}
	c, _ = newClient(t, fakeRESP(t, "$-1\r\n"), store.Options{Timeout: time.Second})
	if got, err := c.ClaimProof(context.Background(), "jkt", "jti", time.Minute); err != nil || got != store.Seen {
		t.Errorf("nil: %v, %v; want Seen", got, err)
	}
}
