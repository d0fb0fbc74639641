package mcpauth

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// filter_tools_list: the response to a tools/list request reaches the client without the
// tools the token may not call. The MCP server answers with one JSON document or with an SSE
// stream; in both, only responses (messages without a method) whose result holds a tools
// array are rewritten, and of those only the array: the rest keeps its bytes. Everything
// else, other status codes and content types included, passes untouched.

// maxToolsListJSON bounds how much of an application/json tools/list answer is held to be
// filtered. A larger answer is refused with 502 rather than passed unfiltered.
const maxToolsListJSON = 32 << 20

type filterMode uint8

const (
	modeUndecided filterMode = iota
	modePass                 // not a tools/list result: untouched
	modeJSON                 // whole body held, filtered at the end
	modeSSE                  // events filtered one by one as they complete
	modeFailed               // cannot be filtered: 502 written, the rest dropped
)

// toolsFilter wraps the response writer of a tools/list request.
type toolsFilter struct {
	*caddyhttp.ResponseWriterWrapper
	allowed func(name string) bool
	mode    filterMode
	status  int
	buf     []byte // JSON: the body so far; SSE: the incomplete event
	evStart int    // SSE: start of the first line not yet scanned of buf
	sseOnly bool   // filter event streams only; other answers pass (GET streams)
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
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch {
	case status != http.StatusOK || (mt != "application/json" && mt != "text/event-stream") ||
		(f.sseOnly && mt != "text/event-stream"):
		f.mode = modePass
		f.ResponseWriter.WriteHeader(status)
		return
	case hasContentCoding(h):
		f.fail()
		return
	case mt == "application/json":
		f.mode = modeJSON
	default:
		f.mode = modeSSE
		h.Del("Content-Length")
		f.ResponseWriter.WriteHeader(status)
	}
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
	case modeJSON:
		out, _, err := filterToolsJSON(f.buf, f.allowed)
		if err != nil {
			f.fail()
			return
		}
		f.Header().Set("Content-Length", strconv.Itoa(len(out)))
		f.ResponseWriter.WriteHeader(f.status)
		_, _ = f.ResponseWriter.Write(out)
	case modeSSE:
		_ = f.writeEvents(true)
		// An event the stream did not end is not dispatched by clients (SSE §9.2.6); it is
		// dropped rather than passed on unfiltered.
		f.buf = nil
	}
}

// writeEvents sends every complete event in buf, filtered, each flushed on its own so the
// stream keeps its pace; the rest stays in buf.
func (f *toolsFilter) writeEvents(final bool) error {
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
			}
		}
		if i == start && le > i && f.buf[i] == ':' {
			// A comment outside an event (a keep-alive) carries no data: it passes at once.
			if _, err := f.ResponseWriter.Write(f.buf[i:next]); err != nil {
				return err
			}
			_ = http.NewResponseController(f.ResponseWriter).Flush()
			start = next
			i = next
			continue
		}
		if le == i { // an empty line ends the event
			if ev := filterSSEEvent(f.buf[start:next], f.allowed); len(ev) > 0 {
				if _, err := f.ResponseWriter.Write(ev); err != nil {
					return err
				}
				_ = http.NewResponseController(f.ResponseWriter).Flush()
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
	return nil
}

// filterSSEEvent returns the event with the tools list of its data filtered. An event that
// needs no change keeps its bytes. Its data lines are joined with "\n" as clients do.
func filterSSEEvent(ev []byte, allowed func(string) bool) []byte {
	var data []byte
	nData := 0
	for rest := ev; len(rest) > 0; {
		line, next := sseLine(rest)
		rest = next
		if v, ok := sseField(line, "data"); ok {
			if nData > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			nData++
		}
	}
	if nData == 0 || len(bytes.TrimSpace(data)) == 0 {
		return ev
	}
	// Data that does not open a JSON object or array is no JSON-RPC message for any parser
	// (the endpoint event of the 2024-11-05 SSE transport, plain text): it passes as it is.
	if t := bytes.TrimLeft(data, " \t\r\n"); t[0] != '{' && t[0] != '[' {
		return ev
	}
	out, changed, err := filterToolsJSON(data, allowed)
	if err != nil {
		// Not a message a client could read; dropped so nothing unfiltered gets through.
		return nil
	}
	if !changed {
		return ev
	}
	// The other fields keep their place; the data goes where its first line was.
	var b []byte
	wroteData := false
	for rest := ev; len(rest) > 0; {
		line, next := sseLine(rest)
		raw := rest[:len(rest)-len(next)]
		rest = next
		if len(line) == 0 {
			continue
		}
		if _, ok := sseField(line, "data"); ok {
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
	return append(b, '\n')
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
// or a batch of them) whose result has a tools array. A tool without a string name is
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
		err = errRPCNotMessage
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
