package mcpauth

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
)

// filter_tools_list and filter_lists: the answer to a list request reaches the client without
// the tools the token may not call (and, with filter_lists, the prompts it may not get, the
// resources it may not read and the resource templates it may read nothing of), and with
// cacheScope "private": the list varies by caller (MCP 2026-07-28, "Caching"). The filter reads an answer the way the most lenient official client
// (the TypeScript SDK with eventsource-parser, the Go SDK) would, and whatever it cannot read
// with certainty it refuses rather than passes; docs/filter.md has the table and the client
// behaviour behind each rule:
//
//   - application/json and text/event-stream bodies are filtered whatever the status: a 2xx
//     body is the result (202 included: the Go SDK reads the body of a 202 to a call), and an
//     error body is shown to the application in the TypeScript SDK's error text.
//   - a 2xx answer of any other type is refused (502) if it has a body; no client reads one,
//     so it cannot be a result the filter let through. 202 is the exception: the 2024-11-05
//     transport answers "Accepted" in text, and no client reads a 202 unless JSON or SSE.
//   - the answer to a GET (an event stream, resumed with Last-Event-ID) is read as an event
//     stream whatever its type unless it is JSON: the TypeScript SDK never looks at it.
//
// Only responses (messages without a method) whose result holds a list array of a filtered
// kind are rewritten, and of those only the array and cacheScope: the rest keeps its bytes.

// maxListAnswer bounds how much of a tools/list answer is held to be filtered: a whole
// JSON answer, or one event of a stream. A larger JSON answer is refused with 502 rather than
// passed unfiltered; a stream is cut off.
const maxListAnswer = 32 << 20

type filterMode uint8

const (
	modeUndecided filterMode = iota
	modePass                 // no client reads a result from it: untouched
	modeHeld                 // a 2xx answer of another type: passed if bodiless, else refused
	modeJSON                 // whole body held, filtered at the end
	modeSSE                  // events filtered one by one as they complete
	modeFailed               // cannot be filtered: 502 written, or the stream cut off
)

// answerKind is how clients read an answer body, from its Content-Type.
type answerKind uint8

const (
	kindOther answerKind = iota
	kindJSON
	kindSSE
)

// answerKindOf reads a Content-Type as leniently as any client: the media type before the
// first ";" (parameters, charset included, are ignored by every SDK: they decode UTF-8),
// case-insensitively and past the space each one trims. The Go SDK uses mime.ParseMediaType
// (strings.TrimSpace, strings.ToLower: Unicode spaces and case); fetch reads header bytes as
// Latin-1 and the TypeScript SDK trims with String.prototype.trim, which also drops a lone
// 0xA0 byte (U+00A0). Anything else is no JSON or event stream to any of them.
func answerKindOf(ct string) answerKind {
	mt, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(trimMediaType(mt)) {
	case "application/json":
		return kindJSON
	case "text/event-stream":
		return kindSSE
	}
	return kindOther
}

func trimMediaType(s string) string {
	for {
		t := strings.TrimSpace(s)
		for len(t) > 0 && t[0] == 0xA0 {
			t = t[1:]
		}
		for len(t) > 0 && t[len(t)-1] == 0xA0 {
			t = t[:len(t)-1]
		}
		if len(t) == len(s) {
			return t
		}
		s = t
	}
}

// listFilter wraps the response writer of a list request.
type listFilter struct {
	*caddyhttp.ResponseWriterWrapper
	lists  *mcpjson.ListFilter
	mode   filterMode
	status int
	buf    []byte            // JSON: the body so far
	sse    mcpjson.SSEStream // SSE: the stream's framing and its incomplete event
	// sseOnly marks the answer to a GET: clients read it as an event stream whatever its type,
	// unless it is JSON (a POST redirected with 303 reads the answer to the GET as its own).
	sseOnly bool
}

// newListFilter returns the writer that filters the lists of kinds for the caller: an
// entry stays when the policy would let the caller use it.
func newListFilter(w http.ResponseWriter, p *policy.Policy, c *caller, kinds mcpjson.ListKinds) *listFilter {
	return newEntryFilter(w, kinds, func(k mcpjson.ListKind, key string) bool {
		return p.EntryAllowed(&c.subject, k, key)
	})
}

// newEntryFilter returns the writer that filters the lists of kinds: an entry stays when
// allowed says so.
func newEntryFilter(w http.ResponseWriter, kinds mcpjson.ListKinds, allowed func(mcpjson.ListKind, string) bool) *listFilter {
	f := &listFilter{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		lists:                 &mcpjson.ListFilter{Kinds: kinds, Allowed: allowed},
	}
	f.sse.Lists = f.lists
	return f
}

// WriteHeader decides from the status and headers whether and how the body is filtered.
func (f *listFilter) WriteHeader(status int) {
	if f.mode != modeUndecided {
		return
	}
	if status == http.StatusSwitchingProtocols {
		// The connection would become a tunnel (reverse_proxy hijacks it next) whose bytes
		// the filter never reads: the result must not reach the client that way.
		f.fail()
		return
	}
	if status >= 100 && status < 200 {
		f.ResponseWriter.WriteHeader(status)
		return
	}
	f.status = status
	h := f.Header()
	kind := answerKindOf(h.Get("Content-Type"))
	success := status >= 200 && status < 300
	switch {
	case status == http.StatusNoContent || status == http.StatusNotModified:
		// No body (RFC 9110 §15.3.5, §15.4.5); net/http refuses to write one.
		f.pass(status)
		return
	case kind == kindOther && success && f.sseOnly:
		kind = kindSSE
	case kind == kindOther && (!success || status == http.StatusAccepted):
		f.pass(status)
		return
	case kind == kindOther:
		f.mode = modeHeld
		return
	}
	if hasContentCoding(h) {
		f.fail()
		return
	}
	if kind == kindJSON {
		f.mode = modeJSON
		return
	}
	f.mode = modeSSE
	h.Del("Content-Length")
	f.ResponseWriter.WriteHeader(status)
}

func (f *listFilter) pass(status int) {
	f.mode = modePass
	f.ResponseWriter.WriteHeader(status)
}

// fail answers 502: the result could not be filtered, and must not reach the client whole.
func (f *listFilter) fail() {
	f.mode = modeFailed
	f.buf = nil
	f.sse.Drop()
	h := f.Header()
	for k := range h {
		delete(h, k)
	}
	body := errorBody("server_error", "The list result could not be filtered.")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	f.ResponseWriter.WriteHeader(http.StatusBadGateway)
	_, _ = f.ResponseWriter.Write(body)
}

func (f *listFilter) Write(b []byte) (int, error) {
	if f.mode == modeUndecided {
		f.WriteHeader(http.StatusOK)
	}
	switch f.mode {
	case modePass:
		return f.ResponseWriter.Write(b)
	case modeHeld:
		if len(b) > 0 {
			f.fail()
		}
	case modeJSON:
		if len(f.buf)+len(b) > maxListAnswer {
			f.fail()
			return len(b), nil
		}
		f.buf = append(f.buf, b...)
	case modeSSE:
		if err := f.writeEvents(b, false); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// ReadFrom goes through Write, so that a copy cannot bypass the filter.
func (f *listFilter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{f}, r)
}

type writerOnly struct{ io.Writer }

// Hijack refuses: a hijacked connection is written to past the filter (reverse_proxy does so
// after a 101). http.ResponseController asks the outermost writer first, so the refusal holds
// for every handler below this one.
func (f *listFilter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errNoHijack
}

// Flush sends what is complete. A JSON answer is never partly sent.
func (f *listFilter) Flush() {
	if f.mode == modePass || f.mode == modeSSE {
		_ = http.NewResponseController(f.ResponseWriter).Flush()
	}
}

// finish sends what the filter still holds, once the next handler returned.
func (f *listFilter) finish() {
	switch f.mode {
	case modeHeld:
		// No body came: there is nothing to read.
		f.mode = modePass
		f.ResponseWriter.WriteHeader(f.status)
	case modeJSON:
		out, err := mcpjson.FilterJSONAnswer(f.buf, f.lists)
		if err != nil {
			f.fail()
			return
		}
		f.Header().Set("Content-Length", strconv.Itoa(len(out)))
		f.ResponseWriter.WriteHeader(f.status)
		_, _ = f.ResponseWriter.Write(out)
	case modeSSE:
		if f.writeEvents(nil, true) == nil {
			if b := f.sse.Tail(); len(b) > 0 {
				_ = f.Send(b)
			}
		}
	}
}

// writeEvents feeds b to the event stream, which sends every complete event, filtered; an
// event that outgrows maxListAnswer cuts the stream off.
func (f *listFilter) writeEvents(b []byte, final bool) error {
	if err := f.sse.Feed(b, final, f); err != nil {
		return err
	}
	if f.sse.Held() > maxListAnswer {
		// The status is sent: the stream can only be cut off.
		f.mode = modeFailed
		f.sse.Drop()
		return errSSEEventTooLarge
	}
	return nil
}

// Send writes b to the client and flushes it, each event on its own so the stream keeps
// its pace.
func (f *listFilter) Send(b []byte) error {
	if _, err := f.ResponseWriter.Write(b); err != nil {
		return err
	}
	_ = http.NewResponseController(f.ResponseWriter).Flush()
	return nil
}
