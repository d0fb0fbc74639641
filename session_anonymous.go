package mcpauth

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// bind_sessions with public: a session opened without a token is tagged anonymous, an HMAC
// of the server's ID under its own label, so that no (iss, sub, client_id) tuple can ever
// share its tag (the caller tags start with another label). Such a session stays usable with
// or without a token: a client keeps its session when the user signs in. A session opened
// with a token stays bound to that caller; anyone else, anonymous callers included, gets 404.
//
// What a stolen anonymous session ID is worth: whatever the session is worth without a token.
// Its holder can send the public operations in it, with or without their own token, and reads
// nothing a token unlocks; but if the user signed in within that session, any state the MCP
// server keeps per session (rather than per request's identity) is shared with the holder.

// anonymousSessionLabel starts the HMAC input of an anonymous tag. It differs from the
// caller tags' label ("mcp_auth session v1") at its 18th byte, so no input of one kind is an
// input of the other.
const anonymousSessionLabel = "mcp_auth session anonymous v1"

// tagAnonymous appends the anonymous tag of the server's session ID sid.
func (b *sessionBinder) tagAnonymous(dst []byte, sid string) []byte {
	m := b.macs.Get().(*sessionMAC)
	m.mac.Reset()
	in := append(m.in[:0], anonymousSessionLabel...)
	n := len(sid)
	in = append(in, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	in = append(in, sid...)
	m.mac.Write(in)
	if cap(in) <= 4<<10 {
		m.in = in
	}
	m.mac.Sum(m.sum[:0])
	dst = base64.RawURLEncoding.AppendEncode(dst, m.sum[:])
	b.macs.Put(m)
	return dst
}

// bindAnonymous returns the session ID handed to a client without a token.
func (b *sessionBinder) bindAnonymous(sid string) string {
	out := make([]byte, 0, len(sid)+1+sessionTagLen)
	out = append(out, sid...)
	out = append(out, '.')
	return string(b.tagAnonymous(out, sid))
}

// unbindAnonymous checks an anonymous tag and returns the server's session ID.
func (b *sessionBinder) unbindAnonymous(sent string) (string, bool) {
	dot := strings.LastIndexByte(sent, '.')
	if dot < 0 || len(sent)-dot-1 != sessionTagLen {
		return "", false
	}
	sid := sent[:dot]
	var buf [64]byte
	want := b.tagAnonymous(buf[:0], sid)
	var diff byte
	for i := range want {
		diff |= want[i] ^ sent[dot+1+i]
	}
	if diff != 0 {
		return "", false
	}
	return sid, true
}

// checkAnonymousSession checks the session of a request without a token: present reports a
// session ID; ok that it was opened without a token (its tag is then replaced by the
// server's ID). A session bound to a caller is not ok.
func (b *sessionBinder) checkAnonymousSession(r *http.Request) (present, ok bool) {
	vals, present, ok := sentSessionID(r)
	if !present || !ok {
		return present, ok
	}
	sid, ok := b.unbindAnonymous(vals[0])
	if !ok {
		return true, false
	}
	vals[0] = sid
	return true, true
}

// checkCallerSession is checkSession for a caller with a token, that also accepts, with
// public on, a session opened without a token; anonymous reports that one, and sid is the
// server's ID of it.
func (b *sessionBinder) checkCallerSession(r *http.Request, id *verify.Identity, anchor string) (ok, anonymous bool, sid string) {
	if b.anonymousOK {
		if vals, present, fine := sentSessionID(r); present && fine {
			if sid, ok := b.unbindAnonymous(vals[0]); ok {
				vals[0] = sid
				return true, true, sid
			}
		}
	}
	return b.checkSession(r, id, anchor), false, ""
}
