package mcpauth

import (
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"

	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

// maxToolsListJSON bounds how much of a tools/list answer is held to be filtered: a whole
// JSON answer, or one event of a stream. A larger JSON answer is refused with 502 rather than
// passed unfiltered; a stream is cut off.
const maxToolsListJSON = 32 << 20

var errSSEEventTooLarge = errors.New("list filter: event stream event larger than 32 MiB")

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

// toolsFilter wraps the response writer of a list request.
type toolsFilter struct {
	*caddyhttp.ResponseWriterWrapper
	lists   *mcpjson.ListFilter
	mode    filterMode
	status  int
	buf     []byte // JSON: the body so far; SSE: the incomplete event
	evStart int    // SSE: start of the first line not yet scanned of buf
	started bool   // SSE: the byte-order marks at the start are dealt with
	// sseOnly marks the answer to a GET: clients read it as an event stream whatever its type,
	// unless it is JSON (a POST redirected with 303 reads the answer to the GET as its own).
	sseOnly bool
}

// newToolsFilter returns the writer that filters the lists of kinds for the caller.
func newToolsFilter(w http.ResponseWriter, rules *ruleSet, c *caller, kinds mcpjson.ListKinds) *toolsFilter {
	return &toolsFilter{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		lists: &mcpjson.ListFilter{Kinds: kinds, Allowed: func(k mcpjson.ListKind, key string) bool {
			return rules.entryAllowed(k, key, c)
		}},
	}
}

// WriteHeader decides from the status and headers whether and how the body is filtered.
func (f *toolsFilter) WriteHeader(status int) {
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

func (f *toolsFilter) pass(status int) {
	f.mode = modePass
	f.ResponseWriter.WriteHeader(status)
}

// fail answers 502: the result could not be filtered, and must not reach the client whole.
func (f *toolsFilter) fail() {
	f.mode = modeFailed
	f.buf = nil
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

func (f *toolsFilter) Write(b []byte) (int, error) {
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
		if len(f.buf)+len(b) > maxToolsListJSON {
			f.fail()
			return len(b), nil
		}
		f.buf = append(f.buf, b...)
	case modeSSE:
		f.buf = append(f.buf, b...)
		if err := f.writeEvents(false); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// ReadFrom goes through Write, so that a copy cannot bypass the filter.
func (f *toolsFilter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{f}, r)
}

type writerOnly struct{ io.Writer }

// errNoHijack refuses to hand over the connection of a filtered answer.
var errNoHijack = errors.New("list filter: the connection of a filtered answer cannot be taken over")

// Hijack refuses: a hijacked connection is written to past the filter (reverse_proxy does so
// after a 101). http.ResponseController asks the outermost writer first, so the refusal holds
// for every handler below this one.
func (f *toolsFilter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errNoHijack
}

// Flush sends what is complete. A JSON answer is never partly sent.
func (f *toolsFilter) Flush() {
	if f.mode == modePass || f.mode == modeSSE {
		_ = http.NewResponseController(f.ResponseWriter).Flush()
	}
}

// finish sends what the filter still holds, once the next handler returned.
func (f *toolsFilter) finish() {
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
		if f.writeEvents(true) == nil {
			f.writeTail()
		}
	}
}

// writeEvents sends every complete event in buf, filtered, each flushed on its own so the
// stream keeps its pace; the rest stays in buf.
//
// Clients split an event stream into lines differently: WHATWG parsers (eventsource-parser)
// end a line at CR, LF or CRLF, the Go SDK at LF only, keeping a lone CR inside the line. A
// lone CR is therefore sent as LF, so that every client sees the lines the filter read.
func (f *toolsFilter) writeEvents(final bool) error {
	if !f.started && !f.dropBOMs(final) {
		return nil
	}
	start, i := 0, f.evStart
	for i < len(f.buf) {
		j := bytes.IndexAny(f.buf[i:], "\r\n")
		if j < 0 {
			break
		}
		le := i + j
		next := le + 1
		if f.buf[le] == '\r' {
			if next == len(f.buf) && !final {
				break // a '\n' may follow in the next write
			}
			if next < len(f.buf) && f.buf[next] == '\n' {
				next++
			} else {
				f.buf[le] = '\n'
			}
		}
		switch {
		case i == start && le > i && f.buf[i] == ':':
			// A comment outside an event (a keep-alive) carries no data: it passes at once.
			if err := f.send(f.buf[i:next]); err != nil {
				return err
			}
			start = next
		case le == i: // an empty line ends the event
			if ev := mcpjson.FilterSSEEvent(f.buf[start:next], f.lists); len(ev) > 0 {
				if err := f.send(ev); err != nil {
					return err
				}
			}
			start = next
		}
		i = next
	}
	if start > 0 {
		f.buf = append(f.buf[:0], f.buf[start:]...)
		i -= start
	}
	f.evStart = i
	if len(f.buf) > maxToolsListJSON {
		// The status is sent: the stream can only be cut off.
		f.mode = modeFailed
		f.buf = nil
		return errSSEEventTooLarge
	}
	return nil
}

// dropBOMs removes the byte-order marks at the start of the stream (mcpjson.TrimStreamBOMs).
// It reports false while the start could still become a mark.
func (f *toolsFilter) dropBOMs(final bool) bool {
	var ok bool
	f.buf, ok = mcpjson.TrimStreamBOMs(f.buf, final)
	f.started = ok
	return ok
}

// send writes b to the client and flushes it.
func (f *toolsFilter) send(b []byte) error {
	if _, err := f.ResponseWriter.Write(b); err != nil {
		return err
	}
	_ = http.NewResponseController(f.ResponseWriter).Flush()
	return nil
}

// writeTail deals with what is left when the stream ends: an event without its empty line
// (mcpjson.SSETail says what of it may pass).
func (f *toolsFilter) writeTail() {
	tail := f.buf
	f.buf = nil
	if b := mcpjson.SSETail(tail); len(b) > 0 {
		_ = f.send(b)
	}
}
