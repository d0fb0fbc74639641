package mcpjson

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// Reading and rewriting the answer to a tools/list request for filter_tools_list: the answer
// reaches the client without the tools the token may not call. The answer is read the way the
// most lenient official client (the TypeScript SDK with eventsource-parser, the Go SDK) would,
// and whatever cannot be read with certainty is an error rather than passed; docs/filter.md
// has the table and the client behaviour behind each rule. Only responses (messages without a
// method) whose result holds a tools array are rewritten, and of those only the array: the
// rest keeps its bytes.

// The byte-order marks clients drop at the start of a stream: the TextDecoderStream in front
// of eventsource-parser drops a UTF-8 BOM (WHATWG Encoding, "UTF-8 decode"), and
// eventsource-parser 3 then drops "ï»¿" (the BOM's bytes read as Latin-1) from its first chunk.
var (
	utf8BOM   = []byte("\xEF\xBB\xBF")
	latin1BOM = []byte("\u00EF\u00BB\u00BF")
)

// TrimStreamBOMs removes the byte-order marks at the start of an event stream, all of them, in
// any order: the filter reads the stream as the client that drops the most, and the client
// gets it without them, so that no client reads a first line the filter did not. No mark can
// come first later either: every line sent is a comment or a known field (FilterSSEEvent).
// It reports false while the start could still become a mark (final false: more may come).
func TrimStreamBOMs(b []byte, final bool) ([]byte, bool) {
	for {
		switch {
		case bytes.HasPrefix(b, utf8BOM):
			b = b[len(utf8BOM):]
		case bytes.HasPrefix(b, latin1BOM):
			b = b[len(latin1BOM):]
		case !final && (bytes.HasPrefix(utf8BOM, b) || bytes.HasPrefix(latin1BOM, b)):
			return b, false
		default:
			return b, true
		}
	}
}

// FilterJSONAnswer filters an application/json body. fetch's Response.json() drops a UTF-8
// BOM before it parses (WHATWG Encoding, "UTF-8 decode"), so the JSON after one is filtered
// and the mark kept; the Go SDK refuses such a body either way. An empty body holds nothing.
func FilterJSONAnswer(body []byte, allowed func(string) bool) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	rest := bytes.TrimPrefix(body, utf8BOM)
	out, changed, err := FilterToolsJSON(rest, allowed)
	if err != nil {
		return nil, err
	}
	if !changed {
		return body, nil
	}
	bom := body[: len(body)-len(rest) : len(body)-len(rest)]
	return append(bom, out...), nil
}

// SSETail returns what may be sent of the end of a stream that is an event without its empty
// line. WHATWG parsers drop it (HTML, server-sent events: "If the file ends in the middle of
// an event, before the final empty line, the incomplete event is not dispatched"), the Go SDK
// dispatches it. It passes only if it has no data (else SSETail returns nil), and without its
// unknown fields.
func SSETail(tail []byte) []byte {
	var b []byte
	for rest := tail; len(rest) > 0; {
		line, next := sseLine(rest)
		raw := rest[:len(rest)-len(next)]
		rest = next
		if _, ok := sseField(line, "data"); ok {
			return nil
		}
		if knownSSELine(line) {
			b = append(b, raw...)
		}
	}
	return b
}

// FilterSSEEvent returns the event with the tools list of its data filtered, and without the
// lines that are no field clients know: every client ignores those, and they are where a
// client that splits lines another way could have found a message (a JSON line behind a lone
// CR is its own line to eventsource-parser but data to the Go SDK). An event that needs no
// change keeps its bytes. Its data lines are joined with "\n" as clients do.
func FilterSSEEvent(ev []byte, allowed func(string) bool) []byte {
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
		if out, changed, err = FilterToolsJSON(data, allowed); err != nil {
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

// FilterToolsJSON removes the tools allowed refuses from every response in data (a message
// or a batch of them) whose result has a tools array. Leading JSON white space is skipped
// like clients do; any other byte before the value makes it invalid. A tool without a string name is
// removed too. Invalid JSON is an error: the caller must not pass it on unfiltered.
func FilterToolsJSON(data []byte, allowed func(string) bool) ([]byte, bool, error) {
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
