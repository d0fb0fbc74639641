package mcpauth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// defaultMaxBodySize is the largest request body read for the per-operation policy.
const defaultMaxBodySize = 1 << 20

// operations is the per-operation policy of a handler (SPEC §5). It is nil when no rule is
// configured and filter_tools_list is off; then the body is never read.
type operations struct {
	rules       *ruleSet
	filterTools bool
	maxBody     int64
}

var readerPool = sync.Pool{New: func() any { return new(jsonReader) }}

// errBodyTooLarge is the body read's own over-limit error.
var errBodyTooLarge = errors.New("request body too large")

// judgeOperation runs after the token verified. It judges the request by the base policy and
// the rules that apply to the JSON-RPC messages of its body, and writes the denial itself
// when there is one (ok false). For a tools/list request with filter_tools_list it returns
// the writer that filters the result.
func (h *Handler) judgeOperation(w http.ResponseWriter, r *http.Request, granted []string) (tf *toolsFilter, ok bool) {
	ops := h.ops
	// GET opens the SSE stream and DELETE ends a session: no JSON-RPC message to judge. Only
	// POST carries messages in Streamable HTTP.
	if r.Method != http.MethodPost {
		if !ops.rules.base.satisfiedBy(granted) {
			_ = h.deny(w, r, denyInsufficientScope, nil)
			return nil, false
		}
		if ops.filterTools && r.Method == http.MethodGet {
			// A GET stream can carry a tools/list result too: a client resuming a POST's
			// stream with Last-Event-ID gets its events replayed there. Filter it as well.
			r.Header.Del("Accept-Encoding")
			tf := newToolsFilter(w, ops.rules, granted)
			tf.sseOnly = true // a GET is never answered with a JSON-RPC response in JSON
			return tf, true
		}
		return nil, true
	}
	// A body the gateway cannot read as JSON cannot be judged, so it is not passed on either.
	if !isJSONContentType(r.Header.Get("Content-Type")) || hasContentCoding(r.Header) {
		if !ops.rules.base.satisfiedBy(granted) {
			_ = h.deny(w, r, denyInsufficientScope, nil)
		} else {
			_ = h.deny(w, r, denyUnsupportedBody, nil)
		}
		return nil, false
	}

	body, err := readBody(r, ops.maxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			_ = h.deny(w, r, denyBodyTooLarge, nil)
		} else {
			_ = h.deny(w, r, denyBodyUnreadable, err)
		}
		return nil, false
	}
	// The next handler gets the same bytes, whatever the outcome here.
	setBody(r, body)

	var buf [4]rpcMessage
	p := readerPool.Get().(*jsonReader)
	msgs, batch, err := p.readRPC(body, buf[:0])
	p.data = nil
	readerPool.Put(p)
	if err != nil {
		_ = h.deny(w, r, denyBadMessage, err)
		return nil, false
	}
	if err := checkMCPHeaders(r.Header["Mcp-Method"], r.Header["Mcp-Name"], msgs, batch); err != nil {
		_ = h.deny(w, r, denyHeaderMismatch, err)
		return nil, false
	}

	// A resource URI is judged only in normal form, before any rule is matched against it.
	if err := ops.rules.checkURIs(msgs); err != nil {
		_ = h.deny(w, r, denyResourceURI, err)
		return nil, false
	}

	var matched matchSet
	toolsList := false
	for i := range msgs {
		ops.rules.match(&msgs[i], &matched)
		toolsList = toolsList || msgs[i].method == methodToolsList
	}
	if !ops.rules.satisfiedBy(granted, &matched) {
		challenge := buildChallenge(codeInsufficientScope, denials[denyInsufficientScope].desc,
			ops.rules.stepUpScopes(granted, &matched), h.meta.url)
		if ce := h.logger.Check(zap.DebugLevel, "operation denied"); ce != nil {
			fields := []zap.Field{zap.String("method", msgs[0].method)}
			if msgs[0].name != "" {
				fields = append(fields, zap.String("name", msgs[0].name))
			}
			ce.Write(append(fields, zap.Int("messages", len(msgs)))...)
		}
		_ = h.denyWith(w, r, denyInsufficientScope, challenge, nil)
		return nil, false
	}
	if ops.filterTools && toolsList {
		// The result is rewritten here, so it must reach us uncompressed (encode runs after
		// mcp_auth and would compress for the client otherwise).
		r.Header.Del("Accept-Encoding")
		return newToolsFilter(w, ops.rules, granted), true
	}
	return nil, true
}

// isJSONContentType reports whether the media type is application/json, parameters aside.
func isJSONContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// hasContentCoding reports a request Content-Encoding other than identity: a compressed body
// cannot be judged.
func hasContentCoding(h http.Header) bool {
	for _, v := range h["Content-Encoding"] {
		if strings.TrimSpace(v) != "" && !strings.EqualFold(strings.TrimSpace(v), "identity") {
			return true
		}
	}
	return false
}

// readBody reads the whole body, refusing more than limit bytes without reading them all.
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
