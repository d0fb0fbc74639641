package mcpauth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// filter_tools_list: the answer to a tools/list request reaches the client without the tools
// the token may not call. The filter reads an answer the way the most lenient official client
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
// Only responses (messages without a method) whose result holds a tools array are rewritten,
// and of those only the array: the rest keeps its bytes.

// maxToolsListJSON bounds how much of a tools/list answer is held to be filtered: a whole
// JSON answer, or one event of a stream. A larger JSON answer is refused with 502 rather than
// passed unfiltered; a stream is cut off.
const maxToolsListJSON = 32 << 20

var errSSEEventTooLarge = errors.New("tools filter: event stream event larger than 32 MiB")

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

// The byte-order marks clients drop at the start of a stream: the TextDecoderStream in front
// of eventsource-parser drops a UTF-8 BOM (WHATWG Encoding, "UTF-8 decode"), and
// eventsource-parser 3 then drops "ï»¿" (the BOM's bytes read as Latin-1) from its first chunk.
var (
	utf8BOM   = []byte("\xEF\xBB\xBF")
	latin1BOM = []byte("\u00EF\u00BB\u00BF")
)

// toolsFilter wraps the response writer of a tools/list request.
type toolsFilter struct {
	*caddyhttp.ResponseWriterWrapper
	allowed func(name string) bool
	mode    filterMode
	status  int
	buf     []byte // JSON: the body so far; SSE: the incomplete event
	evStart int    // SSE: start of the first line not yet scanned of buf
	started bool   // SSE: the byte-order marks at the start are dealt with
	// sseOnly marks the answer to a GET: clients read it as an event stream whatever its type,
	// unless it is JSON (a POST redirected with 303 reads the answer to the GET as its own).
	sseOnly bool
}

func newToolsFilter(w http.ResponseWriter, rules *ruleSet, granted []string) *toolsFilter {
	return &toolsFilter{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		allowed:               func(name string) bool { return rules.toolAllowed(name, granted) },
	}
}

// WriteHeader decides from the status and headers whether and how the body is filtered.
func (f *toolsFilter) WriteHeader(status int) {
	if f.mode != modeUndecided {
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
	body := errorBody("server_error", "The tools/list result could not be filtered.")
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
		out, err := filterJSONAnswer(f.buf, f.allowed)
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

// filterJSONAnswer filters an application/json body. fetch's Response.json() drops a UTF-8
// BOM before it parses (WHATWG Encoding, "UTF-8 decode"), so the JSON after one is filtered
// and the mark kept; the Go SDK refuses such a body either way. An empty body holds nothing.
func filterJSONAnswer(body []byte, allowed func(string) bool) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	rest := bytes.TrimPrefix(body, utf8BOM)
	out, changed, err := filterToolsJSON(rest, allowed)
	if err != nil {
		return nil, err
	}
	if !changed {
		return body, nil
	}
	bom := body[: len(body)-len(rest) : len(body)-len(rest)]
	return append(bom, out...), nil
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
			if ev := filterSSEEvent(f.buf[start:next], f.allowed); len(ev) > 0 {
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

// dropBOMs removes the byte-order marks at the start of the stream, all of them, in any
// order: the filter reads the stream as the client that drops the most, and the client gets
// it without them, so that no client reads a first line the filter did not. No mark can come
// first later either: every line sent is a comment or a known field (filterSSEEvent). It
// reports false while the start could still become a mark.
func (f *toolsFilter) dropBOMs(final bool) bool {
	for {
		switch b := f.buf; {
		case bytes.HasPrefix(b, utf8BOM):
			f.buf = b[len(utf8BOM):]
		case bytes.HasPrefix(b, latin1BOM):
			f.buf = b[len(latin1BOM):]
		case !final && (bytes.HasPrefix(utf8BOM, b) || bytes.HasPrefix(latin1BOM, b)):
			return false
		default:
			f.started = true
			return true
		}
	}
}

// send writes b to the client and flushes it.
func (f *toolsFilter) send(b []byte) error {
	if _, err := f.ResponseWriter.Write(b); err != nil {
		return err
	}
	_ = http.NewResponseController(f.ResponseWriter).Flush()
	return nil
}

// writeTail deals with what is left when the stream ends: an event without its empty line.
// WHATWG parsers drop it (HTML, server-sent events: "If the file ends in the middle of an
// event, before the final empty line, the incomplete event is not dispatched"), the Go SDK
// dispatches it. It passes only if it has no data, and without its unknown fields.
func (f *toolsFilter) writeTail() {
	tail := f.buf
	f.buf = nil
	var b []byte
	for rest := tail; len(rest) > 0; {
		line, next := sseLine(rest)
		raw := rest[:len(rest)-len(next)]
		rest = next
		if _, ok := sseField(line, "data"); ok {
			return
		}
		if knownSSELine(line) {
			b = append(b, raw...)
		}
	}
	if len(b) > 0 {
		_ = f.send(b)
	}
}

// filterSSEEvent returns the event with the tools list of its data filtered, and without the
// lines that are no field clients know: every client ignores those, and they are where a
// client that splits lines another way could have found a message (a JSON line behind a lone
// CR is its own line to eventsource-parser but data to the Go SDK). An event that needs no
// change keeps its bytes. Its data lines are joined with "\n" as clients do.
func filterSSEEvent(ev []byte, allowed func(string) bool) []byte {
	var data []byte
	nData, unknown := 0, false
	for rest := ev; len(rest) > 0; {
		line, next := sseLine(rest)
		rest = next
		if v, ok := sseField(line, "data"); ok {
			if nData > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			nData++
		} else if len(line) > 0 && !knownSSELine(line) {
			unknown = true
		}
	}
	// Data that does not open a JSON object or array is no JSON-RPC message for any client
	// (the endpoint event of the 2024-11-05 SSE transport, plain text): it passes as it is.
	var out []byte
	changed := false
	if nData > 0 && opensJSON(data) {
		var err error
		if out, changed, err = filterToolsJSON(data, allowed); err != nil {
			// Not a message a client could read; dropped so nothing unfiltered gets through.
			return nil
		}
	}
	if !changed && !unknown {
		return ev
	}
	// The other fields keep their place; the filtered data goes where its first line was.
	var b []byte
	wroteData := false
	for rest := ev; len(rest) > 0; {
		line, next := sseLine(rest)
		raw := rest[:len(rest)-len(next)]
		rest = next
		if len(line) == 0 || !knownSSELine(line) {
			continue
		}
		if _, ok := sseField(line, "data"); ok && changed {
			if !wroteData {
				for _, l := range bytes.Split(out, []byte("\n")) {
					b = append(b, "data: "...)
					b = append(b, l...)
					b = append(b, '\n')
				}
				wroteData = true
			}
			continue
		}
		b = append(b, raw...)
	}
	if len(b) == 0 {
		return nil
	}
	return append(b, '\n')
}

// knownSSELine reports a comment or a field clients read: data, event, id, retry (HTML,
// server-sent events, "Interpreting an event stream"; the Go SDK reads the same four).
func knownSSELine(line []byte) bool {
	if len(line) > 0 && line[0] == ':' {
		return true
	}
	field, _, _ := bytes.Cut(line, []byte(":"))
	switch string(field) {
	case "data", "event", "id", "retry":
		return true
	}
	return false
}

// opensJSON reports whether data opens a JSON object or array past the white space a client
// may skip: JSON's own, and the Unicode White_Space the Go SDK trims from each data line
// (bytes.TrimSpace), U+FEFF too. Such data must be valid JSON, else the event is dropped.
func opensJSON(data []byte) bool {
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if !unicode.IsSpace(r) && r != '\uFEFF' {
			return r == '{' || r == '['
		}
		data = data[size:]
	}
	return false
}

// sseLine splits off the first line of s, without its terminator.
func sseLine(s []byte) (line, rest []byte) {
	j := bytes.IndexAny(s, "\r\n")
	if j < 0 {
		return s, nil
	}
	next := j + 1
	if s[j] == '\r' && next < len(s) && s[next] == '\n' {
		next++
	}
	return s[:j], s[next:]
}

// sseField returns the value of line if it is the named field.
func sseField(line []byte, name string) ([]byte, bool) {
	field, value, found := bytes.Cut(line, []byte(":"))
	if string(field) != name {
		return nil, false
	}
	if !found {
		return nil, true
	}
	return bytes.TrimPrefix(value, []byte(" ")), true
}

// filterToolsJSON removes the tools allowed refuses from every response in data (a message
// or a batch of them) whose result has a tools array. Leading JSON white space is skipped
// like clients do; any other byte before the value makes it invalid. A tool without a string name is
// removed too. Invalid JSON is an error: the caller must not pass it on unfiltered.
func filterToolsJSON(data []byte, allowed func(string) bool) ([]byte, bool, error) {
	p := readerPool.Get().(*jsonReader)
	defer func() { p.data = nil; readerPool.Put(p) }()
	p.reset(data)
	p.loneSurrogates = true
	var splices []splice
	var err error
	switch p.peek() {
	case '{':
		err = p.filterMessage(&splices, allowed)
	case '[':
		err = p.array(func(int) error {
			if p.peek() != '{' {
				return p.value()
			}
			return p.filterMessage(&splices, allowed)
		})
	default:
		// A lone value that is no message (a string, a number) holds no tools: it stays.
		err = p.value()
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return nil, false, err
	}
	if len(splices) == 0 {
		return data, false, nil
	}
	out := make([]byte, 0, len(data))
	at := 0
	for _, s := range splices {
		out = append(out, data[at:s.start]...)
		out = append(out, s.repl...)
		at = s.end
	}
	return append(out, data[at:]...), true, nil
}

// splice replaces data[start:end] with repl.
type splice struct {
	start, end int
	repl       []byte
}

// filterMessage reads one message; if it is a response with result.tools, the filtered
// array is added to splices.
func (p *jsonReader) filterMessage(splices *[]splice, allowed func(string) bool) error {
	f, err := p.beginObject()
	if err != nil {
		return err
	}
	have := false
	var cand splice
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch string(key) {
		case "result":
			if p.peek() == '{' {
				err = p.filterResult(&cand, &have, allowed)
			} else {
				err = p.value()
			}
		default:
			// "Result" is "result" to encoding/json-based clients: fail closed, as for
			// requests.
			if foldsTo(key, responseKeys) {
				return errRPCKeyCase
			}
			err = p.value()
		}
		if err != nil {
			return err
		}
	}
	// A message with both method and result is no valid JSON-RPC, but a lenient client
	// might read its result: filtered whatever else it holds.
	if have {
		*splices = append(*splices, cand)
	}
	return nil
}

// The keys of a server answer the filter reads; their case variants are refused.
var (
	responseKeys = []string{"result"}
	resultKeys   = []string{"tools"}
	toolKeys     = []string{"name"}
)

func (p *jsonReader) filterResult(cand *splice, have *bool, allowed func(string) bool) error {
	f, err := p.beginObject()
	if err != nil {
		return err
	}
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if string(key) != "tools" || p.peek() != '[' {
			if foldsTo(key, resultKeys) {
				return errRPCKeyCase
			}
			if err := p.value(); err != nil {
				return err
			}
			continue
		}
		start := p.pos
		kept := []byte{'['}
		removed := false
		err = p.array(func(int) error {
			p.skipSpace()
			es := p.pos
			name, named, err := p.toolName()
			if err != nil {
				return err
			}
			if named && allowed(name) {
				if len(kept) > 1 {
					kept = append(kept, ',')
				}
				kept = append(kept, p.data[es:p.pos]...)
			} else {
				removed = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if removed {
			*cand = splice{start: start, end: p.pos, repl: append(kept, ']')}
			*have = true
		}
	}
}

// toolName reads a tool definition and returns its name.
func (p *jsonReader) toolName() (string, bool, error) {
	if p.peek() != '{' {
		return "", false, p.value()
	}
	f, err := p.beginObject()
	if err != nil {
		return "", false, err
	}
	name, named := "", false
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return "", false, err
		}
		if !ok {
			return name, named, nil
		}
		if foldsTo(key, toolKeys) {
			return "", false, errRPCKeyCase
		}
		if string(key) == "name" && p.peek() == '"' {
			v, err := p.stringValue()
			if err != nil {
				return "", false, err
			}
			name, named = string(v), true
			continue
		}
		if err := p.value(); err != nil {
			return "", false, err
		}
	}
}
