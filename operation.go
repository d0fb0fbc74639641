package mcpauth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"go.uber.org/zap"
)

// defaultMaxBodySize is the largest request body read for the per-operation policy.
const defaultMaxBodySize = 1 << 20

// opPolicy is how a handler reads requests for its policy: set when a rule is configured,
// or filter_tools_list, filter_lists or audit is on; nil otherwise, and then the body is
// never read. The decision itself is internal/policy's.
type opPolicy struct {
	// lists are the kinds of list filtered: tools with filter_tools_list, all of them with
	// filter_lists.
	lists   mcpjson.ListKinds
	maxBody int64
	// audit asks for the deciding rule to be recorded; ruleLabels name the rules for it.
	audit      bool
	ruleLabels []string
}

// opDecision is judgeOperation's verdict. ServeHTTP writes the denial, if any: it is the only
// place that does.
type opDecision struct {
	// deny is the denial to answer with; denyNone lets the request through.
	deny denial
	// stepUp, when not nil, are the scopes the challenge of an insufficient_scope denial
	// names for this request in place of the usual ones (step-up, MCP authorization, "Scope
	// Challenge Handling").
	stepUp []string
	// err says what went wrong, for the debug log only.
	err error
	// filter, when not nil, is the writer that filters a list result; the next handler
	// writes through it.
	filter *listFilter
	// target is the token exchange target of the messages (token_exchange).
	target int
}

// judgeOperation runs after the token verified. It reads the JSON-RPC messages of the body,
// asks the policy about them and returns the denial when there is one. For a list request
// with filter_tools_list or filter_lists it returns the writer, wrapping w, that filters the
// result.
func (h *Handler) judgeOperation(w http.ResponseWriter, r *http.Request, c *caller, rec *auditRecord) opDecision {
	ops := h.ops
	// A request whose messages the server could read otherwise than this handler does is
	// not judged: it is refused. A token short of the base policy still learns that first
	// (403 with the base scopes), since no request would pass with it.
	if d := unjudgeable(r); d != denyNone {
		if !c.subject.BareAllowed() {
			d = denyInsufficientScope
			if rec != nil {
				rec.rule = ruleBase
			}
		}
		return opDecision{deny: d}
	}
	// GET opens the SSE stream and DELETE ends a session: no JSON-RPC message to judge. Only
	// POST carries messages in Streamable HTTP, and unjudgeable refused any other method
	// that carries a body.
	if r.Method != http.MethodPost {
		if rec != nil {
			rec.rule = ruleBase
		}
		if !c.subject.BareAllowed() {
			return opDecision{deny: denyInsufficientScope}
		}
		if ops.lists != 0 && r.Method == http.MethodGet {
			// A GET stream can carry a list result too: a client resuming a POST's stream
			// with Last-Event-ID gets its events replayed there. Filter it as well.
			r.Header.Del("Accept-Encoding")
			lf := newListFilter(w, h.policy, c, ops.lists)
			h.decorateListWriter(lf)
			lf.sseOnly = true // a GET is never answered with a JSON-RPC response in JSON
			return opDecision{deny: denyNone, filter: lf}
		}
		return opDecision{deny: denyNone}
	}
	body, err := readBody(r, ops.maxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return opDecision{deny: denyBodyTooLarge}
		}
		return opDecision{deny: denyBodyUnreadable, err: err}
	}
	// The next handler gets the same bytes, whatever the outcome here.
	setBody(r, body)

	var buf [4]mcpjson.Message
	msgs, batch, err := mcpjson.ReadRPC(body, buf[:0])
	if err != nil {
		return opDecision{deny: denyBadMessage, err: err}
	}
	// {http.auth.mcp.method} and {http.auth.mcp.name}: the first message's, for limits and
	// logs after this handler, whatever the decision.
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok && len(msgs) > 0 {
		repl.Set(methodPlaceholder, msgs[0].Method)
		repl.Set(namePlaceholder, msgs[0].Name)
	}
	if rec != nil && len(msgs) > 0 {
		rec.method, rec.name = msgs[0].Method, msgs[0].Name
	}
	if err := mcpjson.CheckMCPHeaders(r.Header["Mcp-Method"], r.Header["Mcp-Name"], msgs, batch); err != nil {
		return opDecision{deny: denyHeaderMismatch, err: err}
	}

	v := h.policy.Decide(&c.subject, msgs)
	switch v.Outcome {
	case policy.ResourceURINotNormal:
		return opDecision{deny: denyResourceURI, err: v.Err}
	case policy.ClientNotAllowed, policy.ClaimNotSatisfied:
		return opDecision{deny: outcomeDenials[v.Outcome]}
	}
	if rec != nil {
		rec.rule = ops.ruleName(v.Rule)
	}
	if v.Outcome == policy.InsufficientScope {
		if ce := h.logger.Check(zap.DebugLevel, "operation denied"); ce != nil {
			fields := []zap.Field{zap.String("resource", h.Resource), zap.String("method", msgs[0].Method)}
			if msgs[0].Name != "" {
				fields = append(fields, zap.String("name", msgs[0].Name))
			}
			ce.Write(append(fields, zap.Int("messages", len(msgs)))...)
		}
		return opDecision{deny: denyInsufficientScope, stepUp: v.StepUp}
	}
	target := siteTarget
	if x := h.TokenExchange; x != nil {
		var same bool
		if target, same = x.targetOf(msgs); !same {
			return opDecision{deny: denyExchangeMixed}
		}
	}
	for i := range msgs {
		if k, ok := mcpjson.ListKindOf(msgs[i].Method); ok && ops.lists.Has(k) {
			// The result is rewritten here, so it must reach us uncompressed (encode runs
			// after mcp_auth and would compress for the client otherwise).
			r.Header.Del("Accept-Encoding")
			lf := newListFilter(w, h.policy, c, ops.lists)
			h.decorateListWriter(lf)
			return opDecision{deny: denyNone, filter: lf, target: target}
		}
	}
	return opDecision{deny: denyNone, target: target}
}

// hasContentCoding reports a Content-Encoding other than identity: a compressed answer cannot
// be filtered. (A request is held to more: unjudgeable refuses any Content-Encoding.)
func hasContentCoding(h http.Header) bool {
	for _, v := range h["Content-Encoding"] {
		if strings.TrimSpace(v) != "" && !strings.EqualFold(strings.TrimSpace(v), "identity") {
			return true
		}
	}
	return false
}

// readBody reads the whole body, refusing more than limit bytes without reading them all, and
// a body followed by trailer fields.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errBodyTooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	size := int64(512)
	if r.ContentLength >= 0 {
		size = r.ContentLength + 1 // one more, to see EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):cap(buf)]
		if max := limit + 1 - int64(len(buf)); int64(len(room)) > max {
			room = room[:max]
		}
		n, err := r.Body.Read(room)
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			// Trailer fields (RFC 9110 §6.5) arrive after the body, announced or not (net/http
			// takes undeclared ones too), and reverse_proxy forwards them unchecked: an
			// Authorization, DPoP or Mcp-Session-Id there would reach the server unjudged.
			// MCP requests carry none.
			if len(r.Trailer) != 0 {
				return nil, errRequestTrailers
			}
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errBodyTooLarge
			}
			return nil, err
		}
	}
}

// setBody hands body to the next handler in place of the consumed one, with a length that
// matches it.
func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	if _, ok := r.Header["Content-Length"]; ok {
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
}

// unjudgeable names why the server behind might read r otherwise than judgeOperation does,
// or returns denyNone. Every case is one no MCP client produces, so refusing costs nothing.
//
//   - A request that asks to switch protocols: an Upgrade header or an "upgrade" token in
//     Connection (HTTP/1.1, RFC 9110 §7.8; h2c included), or CONNECT, HTTP/2 and HTTP/3
//     extended CONNECT (RFC 8441, RFC 9220) included. Once the server answers 101 Switching
//     Protocols, the connection is a tunnel whose messages no rule and no list filter reads.
//   - A method-override header. Frameworks honour them (Express method-override, Rack,
//     gorilla/handlers): the server would serve another method than the one judged here. They
//     are refused on every method, whatever their value, as the cheapest certain rule. An
//     override outside the headers (Rack's "_method" form field, a query parameter) can
//     only turn a POST, whose body is judged, into a method without a body: nothing gained.
//   - A body on any method but POST. MCP sends messages only by POST (Streamable HTTP), so
//     only a POST body is judged; but body parsers such as Express's express.json() read the
//     body of any method, and a lenient server or a method override could take it as a call.
//   - A POST body that is not UTF-8 application/json, or that has a content coding: the body
//     is judged as UTF-8 JSON (RFC 8259 §8.1), while express.json() decodes any utf-*
//     charset through iconv (UTF-7 hides "delete_file" as "+AGQ-elete+AF8-file") and inflates
//     gzip, deflate, br and zstd. Any Content-Encoding is refused, even "identity": no
//     client needs it, and no server then decodes differently.
func unjudgeable(r *http.Request) denial {
	// First: reading a CONNECT's body to see whether it has one would wait on the tunnel.
	if asksUpgrade(r) {
		return denyUpgrade
	}
	if hasMethodOverride(r.Header) {
		return denyMethodOverride
	}
	if r.Method != http.MethodPost {
		if requestHasBody(r) {
			return denyBodyNotAllowed
		}
		return denyNone
	}
	if !isUTF8JSON(r.Header["Content-Type"]) || len(r.Header["Content-Encoding"]) != 0 {
		return denyUnsupportedBody
	}
	return denyNone
}

// asksUpgrade reports whether r asks to switch protocols or open a tunnel.
func asksUpgrade(r *http.Request) bool {
	if r.Method == http.MethodConnect || len(r.Header["Upgrade"]) != 0 || len(r.Header[":protocol"]) != 0 {
		return true
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// methodOverrideHeaders are the header names frameworks read a method override from, in
// lower case. Names are compared with '_' read as '-': CGI-style servers (WSGI, Rack, PHP)
// see both spellings as the same HTTP_X_HTTP_METHOD_OVERRIDE variable.
var methodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// hasMethodOverride reports whether hdr holds a method-override header under any spelling.
func hasMethodOverride(hdr http.Header) bool {
	for name := range hdr {
		for _, o := range methodOverrideHeaders {
			if len(name) == len(o) && sameHeaderName(name, o) {
				return true
			}
		}
	}
	return false
}

// sameHeaderName compares name with lower, ASCII case-insensitively and with '_' as '-'.
func sameHeaderName(name, lower string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// requestHasBody reports whether r carries a body. HTTP/1.1 says so in its headers: a
// Content-Length above zero or a Transfer-Encoding (net/http accepts only chunked). HTTP/2
// and HTTP/3 have no Transfer-Encoding, and their requests without Content-Length come with
// ContentLength -1 (quic-go, for every such request; net/http's HTTP/2 server, when the
// HEADERS frame did not end the stream). Then one byte is read to see whether the stream
// ends there; a byte read is put back. A read error counts as a body: fail closed.
func requestHasBody(r *http.Request) bool {
	if len(r.TransferEncoding) != 0 || r.ContentLength > 0 {
		return true
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return false
	}
	var b [1]byte
	n, err := io.ReadFull(r.Body, b[:])
	switch {
	case n == 0 && err == io.EOF:
		// An empty stream: say so to the handlers after this one as well.
		r.Body = http.NoBody
		r.ContentLength = 0
		return false
	case n == 1:
		r.Body = peekedBody{io.MultiReader(bytes.NewReader(b[:]), r.Body), r.Body}
	}
	return true
}

// peekedBody is a request body with its first byte put back.
type peekedBody struct {
	io.Reader
	io.Closer
}

// isUTF8JSON reports whether vals, the Content-Type header values, are exactly one
// application/json media type (RFC 9110 §8.3.1, case-insensitive) whose parameters are
// well-formed (RFC 9110 §5.6.6, no whitespace around '=') and hold at most one charset, and
// that one utf-8 (quoted or not, any case). Anything else is refused, not repaired: several
// headers, a list ("application/json, text/plain"), an empty or trailing parameter, a
// repeated parameter (parsers disagree on which one counts), and RFC 2231 / RFC 8187 extended
// parameters (charset*=utf-8'en'utf-7, which Go's mime package reads as a charset).
func isUTF8JSON(vals []string) bool {
	if len(vals) != 1 {
		return false
	}
	s := strings.Trim(vals[0], " \t")
	slash := tokenEnd(s)
	if slash == 0 || slash == len(s) || s[slash] != '/' {
		return false
	}
	end := slash + 1 + tokenEnd(s[slash+1:])
	if end == slash+1 || !strings.EqualFold(s[:end], "application/json") {
		return false
	}
	// Parameter names seen so far: a repeated name is refused (parsers disagree on which
	// value counts), and so are more than a handful of parameters.
	var names [8]string
	seen := 0
	for rest := s[end:]; ; {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return true
		}
		if rest[0] != ';' {
			return false
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		n := tokenEnd(rest)
		if n == 0 || n == len(rest) || rest[n] != '=' {
			return false
		}
		name := rest[:n]
		rest = rest[n+1:]
		var value string
		if rest != "" && rest[0] == '"' {
			n = quotedEnd(rest)
			if n < 0 {
				return false
			}
			value, rest = rest[1:n-1], rest[n:]
		} else {
			n = tokenEnd(rest)
			if n == 0 {
				return false
			}
			value, rest = rest[:n], rest[n:]
		}
		if strings.IndexByte(name, '*') >= 0 || seen == len(names) {
			return false
		}
		for _, prev := range names[:seen] {
			if strings.EqualFold(prev, name) {
				return false
			}
		}
		names[seen] = name
		seen++
		// A quoted value is compared as written: "utf\-8" is refused, not unescaped.
		if strings.EqualFold(name, "charset") && !strings.EqualFold(value, "utf-8") {
			return false
		}
	}
}

// tokenEnd returns the length of the RFC 9110 §5.6.2 token at the start of s.
func tokenEnd(s string) int {
	i := 0
	for i < len(s) && isTchar(s[i]) {
		i++
	}
	return i
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// quotedEnd returns the length of the RFC 9110 §5.6.4 quoted-string at the start of s, or
// -1 when it is not one.
func quotedEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(s) || !isQdtext(s[i]) && s[i] != '"' && s[i] != '\\' {
				return -1
			}
		case !isQdtext(c):
			return -1
		}
	}
	return -1
}

// isQdtext: HTAB, SP, visible ASCII but '"' and '\', and obs-text.
func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || (0x23 <= c && c <= 0x5b) || (0x5d <= c && c <= 0x7e) || c >= 0x80
}
