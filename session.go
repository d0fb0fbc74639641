package mcpauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// bind_sessions: the MCP server's session IDs are bound to the caller who opened them, so
// that whoever learns another user's Mcp-Session-Id cannot use it with their own token (MCP
// security best practices, "Session Hijacking"). The binding is stateless: the client is
// handed `<server ID>.<tag>`, where tag is HMAC-SHA256 under the key of the server ID and the
// caller's (iss, sub, client_id). Every request's Mcp-Session-Id is checked against the
// caller presenting it and reaches the MCP server without the tag; any instance with the same
// key checks it, and no store is needed. The binding is to the caller's identity, never to
// the token: a refreshed token of the same caller keeps its session.

// sessionHeader is the Streamable HTTP transport's session header.
const sessionHeader = "Mcp-Session-Id"

// minSessionKey is the shortest key accepted, in bytes: as long as the HMAC-SHA256 output
// (RFC 2104 §3 advises no key shorter than the hash's output).
const minSessionKey = 32

// sessionTagLen is the length of the encoded tag: 32 bytes in unpadded base64url.
var sessionTagLen = base64.RawURLEncoding.EncodedLen(sha256.Size)

// SessionBinding configures bind_sessions.
type SessionBinding struct {
	// Key is the HMAC key, at least 32 bytes once its placeholders are expanded, taken as
	// bytes as written; use `{env.NAME}` or `{file.PATH}` to keep it out of the config. All
	// instances that serve the same MCP server need the same key. Without a key, one is
	// generated when Caddy starts: sessions then end when Caddy restarts.
	//
	// JSON: `bind_sessions.key`. Caddyfile: `bind_sessions <key>`.
	Key string `json:"key,omitempty"`
}

// Provision builds h's session binder under the key (expanded, checked), or a key generated
// for this process, which it warns about: sessions then end when Caddy restarts.
func (b *SessionBinding) Provision(_ caddy.Context, h *Handler) error {
	binder, generated, err := newSessionBinder(b)
	if err != nil {
		return err
	}
	// With public, sessions opened without a token are accepted from callers with one too.
	binder.anonymousOK = h.Public != nil
	h.sessions = binder
	if generated {
		h.logger.Warn("bind_sessions has no key: one was generated for this process; "+
			"MCP sessions end when Caddy restarts, and other instances cannot check them "+
			"(set bind_sessions {env.NAME} with a key of 32 bytes or more)",
			zap.String("resource", h.Resource))
	}
	return nil
}

// Validate checks the key as written: load-time placeholders only, else long enough.
func (b *SessionBinding) Validate() error {
	if b.Key == "" {
		return nil
	}
	return checkSessionKeyArg(b.Key)
}

// processSessionKey is the key generated when none is configured, once per process: a config
// reload keeps the sessions, a restart ends them.
var processSessionKey = sync.OnceValues(func() ([]byte, error) {
	k := make([]byte, minSessionKey)
	_, err := rand.Read(k)
	return k, err
})

// sessionBinder tags and checks session IDs under one key.
type sessionBinder struct {
	macs sync.Pool // of *sessionMAC
	// anonymousOK: public is on, and sessions opened without a token are accepted from
	// callers with one too.
	anonymousOK bool
}

// sessionMAC is an HMAC-SHA256 under the key with its scratch space, reused between requests
// so that tagging allocates nothing.
type sessionMAC struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// newSessionBinder expands the key's placeholders and checks its length; generated reports
// that no key was configured.
func newSessionBinder(cfg *SessionBinding) (b *sessionBinder, generated bool, err error) {
	var key []byte
	if cfg.Key == "" {
		if key, err = processSessionKey(); err != nil {
			return nil, false, fmt.Errorf("bind_sessions: generating a key: %w", err)
		}
		generated = true
	} else {
		s, err := expandAtLoad(caddy.NewReplacer(), "bind_sessions", cfg.Key)
		if err != nil {
			return nil, false, err
		}
		if err := checkSessionKey(s); err != nil {
			return nil, false, err
		}
		key = []byte(s)
	}
	b = &sessionBinder{}
	b.macs.New = func() any { return &sessionMAC{mac: hmac.New(sha256.New, key), in: make([]byte, 0, 256)} }
	return b, generated, nil
}

// checkSessionKey refuses a key too short to be a secret. The key is never part of the error.
func checkSessionKey(s string) error {
	if len(s) < minSessionKey {
		return fmt.Errorf("bind_sessions: the key has %d bytes, fewer than %d; generate one with `openssl rand -base64 48`", len(s), minSessionKey)
	}
	return nil
}

// tag appends to dst the tag of the server's session ID for the caller id. anchor is empty,
// or for a caller that names neither a subject nor a client, the token's SHA-256 (see
// sessionAnchor).
func (b *sessionBinder) tag(dst []byte, sid string, id *verify.Identity, anchor string) []byte {
	m := b.macs.Get().(*sessionMAC)
	m.mac.Reset()
	// Each value is length-prefixed, so that no two tuples hash alike (("ab","c") and
	// ("a","bc")), and the input starts with a label naming its use.
	in := append(m.in[:0], "mcp_auth session v1"...)
	for _, v := range [...]string{sid, id.Issuer, id.Subject, id.ClientID} {
		n := len(v)
		in = append(in, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		in = append(in, v...)
	}
	if anchor != "" {
		// A fifth value: the input is then longer than that of any four-value tuple with
		// the same prefix, so no caller with an identity shares these tags.
		n := len(anchor)
		in = append(in, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		in = append(in, anchor...)
	}
	m.mac.Write(in)
	if cap(in) <= 4<<10 {
		m.in = in // keep the grown buffer, unless an odd request made it huge
	}
	m.mac.Sum(m.sum[:0])
	dst = base64.RawURLEncoding.AppendEncode(dst, m.sum[:])
	b.macs.Put(m)
	return dst
}

// bindFor returns the session ID the client is given: the server's, a '.', and the tag of
// the caller (with its session anchor). Both parts are visible ASCII (0x21–0x7E), as the
// transport requires of session IDs.
func (b *sessionBinder) bindFor(sid string, id *verify.Identity, anchor string) string {
	out := make([]byte, 0, len(sid)+1+sessionTagLen)
	out = append(out, sid...)
	out = append(out, '.')
	return string(b.tag(out, sid, id, anchor))
}

// sessionAnchor is what binds the sessions of a caller whose token names neither a subject
// nor a client (no sub, client_id or azp): the token's SHA-256. Two such tokens of one issuer
// are otherwise the same (iss, "", "") tuple, and each caller could use the other's sessions.
// The session then lasts as long as the token; a caller with an identity gets "" and keeps
// its sessions across refreshed tokens.
func sessionAnchor(id *verify.Identity, td *tokenDigest) string {
	if id.Subject != "" || id.ClientID != "" {
		return ""
	}
	return string(td.hash()[:])
}

// unbindFor checks a session ID the client sent against the caller presenting it (with its
// session anchor) and returns the server's session ID. The tag is compared in constant time.
func (b *sessionBinder) unbindFor(sent string, id *verify.Identity, anchor string) (string, bool) {
	dot := strings.LastIndexByte(sent, '.')
	if dot < 0 || len(sent)-dot-1 != sessionTagLen {
		return "", false
	}
	sid := sent[:dot]
	var buf [64]byte
	want := b.tag(buf[:0], sid, id, anchor)
	// Constant time, as crypto/subtle.ConstantTimeCompare, without copying sent to bytes.
	var diff byte
	for i := range want {
		diff |= want[i] ^ sent[dot+1+i]
	}
	if diff != 0 {
		return "", false
	}
	return sid, true
}

// checkSession replaces the request's Mcp-Session-Id by the server's own ID when its tag
// belongs to the caller, and reports false when it does not: the ID is unknown to this caller.
// A request without the header passes (initialize opens a session).
func (b *sessionBinder) checkSession(r *http.Request, id *verify.Identity, anchor string) bool {
	vals, present, ok := sentSessionID(r)
	if !present || !ok {
		return ok
	}
	sid, ok := b.unbindFor(vals[0], id, anchor)
	if !ok {
		return false
	}
	vals[0] = sid
	return true
}

// sentSessionID returns the request's one Mcp-Session-Id value (present), or ok false when
// the request carries it in a way that cannot be judged.
func sentSessionID(r *http.Request) (vals []string, present, ok bool) {
	// Mcp_Session_Id is another header to net/http, passed on unchecked, but CGI-style servers
	// (WSGI, Rack, PHP) read both spellings as HTTP_MCP_SESSION_ID: refuse it, as the
	// method-override headers are refused.
	for name := range r.Header {
		if name != sessionHeader && len(name) == len(sessionHeader) && sameHeaderName(name, "mcp-session-id") {
			return nil, true, false
		}
	}
	// A request that announces trailers (RFC 9110 §6.5) may send any field after the body,
	// Mcp-Session-Id included: net/http takes every trailer field once one is announced, and
	// reverse_proxy forwards them, unchecked, after this handler has run. MCP requests carry
	// no trailers, so such a request is refused rather than judged on half its fields.
	if r.Trailer != nil {
		return nil, true, false
	}
	vals, present = r.Header[sessionHeader]
	if !present {
		return nil, false, true
	}
	if len(vals) != 1 {
		// Which one the server reads is its business: refuse rather than guess.
		return nil, true, false
	}
	return vals, true, true
}

// dropSessionHeaders removes Mcp-Session-Id in every spelling a server may read as it.
func dropSessionHeaders(hdr http.Header) {
	for name := range hdr {
		if len(name) == len(sessionHeader) && sameHeaderName(name, "mcp-session-id") {
			delete(hdr, name)
		}
	}
}

// sessionWriter hands the client the tagged form of every session ID the MCP server answers
// with, on the initialize response or any other.
type sessionWriter struct {
	// By value: the wrapper and this writer are one allocation.
	caddyhttp.ResponseWriterWrapper
	binder  *sessionBinder
	id      *verify.Identity
	anchor  string
	written bool
	// anonymous: the session was opened, or is used, without a token (public); IDs are
	// tagged as anonymous. For a caller with a token (id set) in an anonymous session, only
	// that session's own ID, anonSID, is: any other the server hands back is a session
	// opened with a token, bound to the caller.
	anonymous bool
	anonSID   string
}

func (w *sessionWriter) rewrite() {
	if w.written {
		return
	}
	w.written = true
	hdr := w.Header()
	vals := hdr[sessionHeader]
	if len(vals) == 0 {
		return
	}
	tagged := make([]string, len(vals))
	for i, v := range vals {
		if w.anonymous && (w.id == nil || v == w.anonSID) {
			tagged[i] = w.binder.bindAnonymous(v)
		} else {
			tagged[i] = w.binder.bindFor(v, w.id, w.anchor)
		}
	}
	hdr[sessionHeader] = tagged
}

// WriteHeader rewrites the session header of the final response; an informational one
// passes untouched.
func (w *sessionWriter) WriteHeader(status int) {
	if status >= 200 {
		w.rewrite()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *sessionWriter) Write(p []byte) (int, error) {
	w.rewrite()
	return w.ResponseWriter.Write(p)
}

// FlushError flushes through the wrapped writer, after the header is rewritten: a flush
// before WriteHeader sends the header.
func (w *sessionWriter) FlushError() error {
	w.rewrite()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// ReadFrom keeps the wrapper's own header handling for io.Copy.
func (w *sessionWriter) ReadFrom(r io.Reader) (int64, error) {
	w.rewrite()
	return w.ResponseWriterWrapper.ReadFrom(r)
}
