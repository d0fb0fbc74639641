package fleet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The same proof sent to two instances at once, as an attacker racing the client would: the
// two SET NX reach the store together, and exactly one request is served per proof, the
// other refused with invalid_dpop_proof, whichever instance wins.
func TestProofRacedAtTwoInstances(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed"})
	b := e.start(t, opts{onError: "closed"})
	c := e.dpopClient(t)

	const proofs = 40
	for i := range proofs {
		p := c.proof(t)
		var got [2]answer
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j, in := range []*instance{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[j], errs[j] = in.do(c.auth(), p)
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		ok := 0
		for j, g := range got {
			switch {
			case g.code == 200:
				ok++
			case g.code == 401:
				checkDenied(t, "the losing copy", g, 401, "invalid_dpop_proof")
			default:
				t.Errorf("proof %d at instance %d: %d %q", i, j, g.code, g.body)
			}
		}
		if ok != 1 {
			t.Fatalf("proof %d sent to A and B at once: %d served, want exactly 1 (%d, %d)", i, ok, got[0].code, got[1].code)
		}
	}
}

// A store that answers SET NX with something Redis never answers (":1", as a proxy that
// runs SET as another command might): no proof passes on it. on_error closed answers 503;
// before, every such answer read as a fresh claim, and a proof replayed at the other
// instance was served too.
func TestStoreUnexpectedReplyThroughCaddy(t *testing.T) {
	e := newEnv(t)
	e.storeTo = fakeRESP(t, ":1\r\n")
	a := e.start(t, opts{onError: "closed", timeout: "2s"})
	b := e.start(t, opts{onError: "closed", timeout: "2s"})
	c := e.dpopClient(t)
	p := c.proof(t)
	checkDenied(t, "DPoP, store answering :1, at A", a.send(c.auth(), p), 503, "temporarily_unavailable")
	checkDenied(t, "the same proof at B", b.send(c.auth(), p), 503, "temporarily_unavailable")
	if got := a.send("Bearer "+e.token(t, ""), ""); got.code != 200 {
		t.Errorf("bearer: %d, want 200 (it needs no store)", got.code)
	}
	a.waitLog("store unreachable", 1)
}

// fakeRESP is a server speaking RESP2 that answers SET with reply, PING with PONG, and
// refuses HELLO as a minimal ACL does: no real server answers SET NX so, hence the fake.
func fakeRESP(t *testing.T, reply string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					args, err := readRESPCommand(r)
					if err != nil {
						return
					}
					out := reply
					switch {
					case len(args) == 0:
					case strings.EqualFold(args[0], "PING"):
						out = "+PONG\r\n"
					case strings.EqualFold(args[0], "HELLO"):
						out = "-NOPERM no permissions to run the 'hello' command\r\n"
					}
					if _, err := io.WriteString(conn, out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// readRESPCommand reads one RESP array of bulk strings (bounded).
func readRESPCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || !strings.HasPrefix(line, "*") || n < 0 || n > 64 {
		return nil, fmt.Errorf("not a command: %q", line)
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

// An instance whose encryption_key differs from the others' (a rollout half done) reads
// their entries as misses: the token is served from the authorization server's answer, never
// refused; a value altered in the store is a miss too.
func TestIntrospectionSharedOtherKeyOrTampered(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed", introspect: true})
	other := e.start(t, opts{onError: "closed", introspect: true, encKey: "another-key-of-at-least-32-bytes-for-the-fleet"})
	r := admin(t, e.redis.Addr)
	ctx := context.Background()

	tok := "opaque-carol-9d2e"
	if got := a.send("Bearer "+tok, ""); got.code != 200 {
		t.Fatalf("opaque token at A: %d %q", got.code, got.body)
	}
	if got := other.send("Bearer "+tok, ""); got.code != 200 {
		t.Fatalf("opaque token at the instance with another key: %d %q", got.code, got.body)
	}
	if n := e.introN.Load(); n != 2 {
		t.Errorf("introspection calls: %d, want 2 (A's entry does not open under another key)", n)
	}
	keys, _ := r.Keys(ctx, "mcp_auth:introspection:*").Result()
	if len(keys) != 2 {
		t.Fatalf("keys = %v, want one entry per key (the names are keyed too)", keys)
	}
	// Every entry altered: a third instance with A's key misses and asks the server.
	for _, k := range keys {
		v, _ := r.Get(ctx, k).Bytes()
		v[len(v)-1] ^= 1
		r.Set(ctx, k, v, time.Minute)
	}
	b := e.start(t, opts{onError: "closed", introspect: true})
	if got := b.send("Bearer "+tok, ""); got.code != 200 {
		t.Fatalf("tampered entry: %d %q, want 200 from the authorization server", got.code, got.body)
	}
	if n := e.introN.Load(); n != 3 {
		t.Errorf("introspection calls: %d, want 3 (the altered entry is a miss)", n)
	}
}
