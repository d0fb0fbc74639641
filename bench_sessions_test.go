package mcpauth

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkSessionsAudit measures what bind_sessions and audit add to a cached request that
// carries a tools/call body (so that the body is read, as with rules):
//
//	rules          per-operation rules, nothing else: the yardstick
//	bind_sessions  the same, with a bound Mcp-Session-Id checked and stripped
//	audit_off      audit configured but its logger below info: no event is built
//	audit_on       one event per request, JSON-encoded to a discarding writer
//
//	go test -run '^$' -bench SessionsAudit -benchmem
func BenchmarkSessionsAudit(b *testing.B) {
	k := jwttest.New(b, "rs", "RS256")
	tok := k.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`)
	discard := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	mk := func(mod func(*Handler)) *Handler {
		js := newJWKSServer(b, k)
		h := &Handler{
			Resource:             cacheRes,
			AuthorizationServers: []string{cacheIss},
			JWKSURLs:             []string{js.URL},
			Scopes:               []string{"mcp:read"},
			Rules:                []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}},
		}
		if mod != nil {
			mod(h)
		}
		provisionHandler(b, h)
		waitKeysLoaded(b, h)
		h.logger = zap.NewNop()
		return h
	}
	cases := []struct {
		name    string
		h       *Handler
		session bool
	}{
		{"rules", mk(nil), false},
		{"bind_sessions", mk(func(h *Handler) { h.BindSessions = &SessionBinding{Key: "an-example-session-key-of-32-bytes-or-more"} }), true},
		{"audit_off", mk(func(h *Handler) { h.Audit = true }), false},
		{"audit_on", mk(func(h *Handler) { h.Audit = true }), false},
	}
	cases[2].h.audit = zap.NewNop()
	cases[3].h.audit = discard
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			base := newBenchRequest(tok)
			base.Header.Set("Content-Type", "application/json")
			var sid string
			if c.session {
				sid = c.h.sessions.bind("SESSION-1", mustCaller(b, c.h, tok))
			}
			rd := bytes.NewReader(body)
			nb := io.NopCloser(rd)
			w := &nopWriter{h: make(http.Header)}
			r := withReplacer(base)
			vals := []string{sid}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// A fresh replacer every 16 requests: each request adds its provider, and the
				// audit event reads a placeholder, which walks them all; Caddy gives every
				// request its own replacer with a handful.
				if i%16 == 15 {
					b.StopTimer()
					r = withReplacer(base)
					b.StartTimer()
				}
				rd.Reset(body)
				r.Body = nb
				r.ContentLength = int64(len(body))
				if sid != "" {
					vals[0] = sid
					r.Header["Mcp-Session-Id"] = vals
				}
				_ = c.h.ServeHTTP(w, r, nextOK)
			}
		})
	}
}

func mustCaller(b *testing.B, h *Handler, tok string) *verify.Identity {
	b.Helper()
	c, d, err := h.authenticate(httptest.NewRecorder(), newBenchRequest(tok), &tokenDigest{raw: tok}, false)
	if d != denyNone {
		b.Fatalf("authenticate: %v", err)
	}
	return c.identity
}

// BenchmarkAuditZapOnly is the yardstick of audit_on: what zap alone costs to encode an event
// of the same fields to the same discarding writer.
func BenchmarkAuditZapOnly(b *testing.B) {
	l := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(io.Discard), zapcore.InfoLevel)).Named("http.handlers.mcp_auth.audit")
	b.ReportAllocs()
	for b.Loop() {
		if ce := l.Check(zapcore.InfoLevel, "decision"); ce != nil {
			ce.Write(zap.String("decision", "allow"), zap.String("iss", cacheIss), zap.String("sub", "user-1"),
				zap.String("client_id", "client-1"), zap.String("method", "tools/call"), zap.String("name", "read_file"),
				zap.String("rule", "base"), zap.String("token_id", "0123456789abcdef"), zap.String("remote_ip", "192.0.2.1"))
		}
	}
}
