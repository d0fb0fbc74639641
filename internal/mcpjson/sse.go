package mcpjson

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// Reading an event stream (text/event-stream) of list answers as clients read it.

// SSEStream filters an event stream of list answers as it arrives: it splits the stream
// into lines and events, drops the byte-order marks at its start, passes comments between
// events at once and hands each complete event, filtered (FilterSSEEvent), to the sender.
//
// Clients split an event stream into lines differently: WHATWG parsers (eventsource-parser)
// end a line at CR, LF or CRLF, the Go SDK at LF only, keeping a lone CR inside the line. A
// lone CR is therefore sent as LF, so that every client sees the lines the filter read.
type SSEStream struct {
	Lists   *ListFilter
	buf     []byte // the incomplete event
	evStart int    // start of the first line not yet scanned of buf
	started bool   // the byte-order marks at the start are dealt with
}

// SSESender receives what may be sent of a filtered stream, piece by piece.
type SSESender interface {
	Send(b []byte) error
}

// Feed appends b to the stream and sends every complete event in it, each on its own so the
// stream keeps its pace; the rest is held. final says the stream ends with b.
func (s *SSEStream) Feed(b []byte, final bool, out SSESender) error {
	s.buf = append(s.buf, b...)
	if !s.started {
		var ok bool
		s.buf, ok = TrimStreamBOMs(s.buf, final)
		s.started = ok
		if !ok {
			return nil
		}
	}
	start, i := 0, s.evStart
	for i < len(s.buf) {
		j := bytes.IndexAny(s.buf[i:], "\r\n")
		if j < 0 {
			break
		}
		le := i + j
		next := le + 1
		if s.buf[le] == '\r' {
			if next == len(s.buf) && !final {
				break // a '\n' may follow in the next write
			}
			if next < len(s.buf) && s.buf[next] == '\n' {
				next++
			} else {
				s.buf[le] = '\n'
			}
		}
		switch {
		case i == start && le > i && s.buf[i] == ':':
			// A comment outside an event (a keep-alive) carries no data: it passes at once.
			if err := out.Send(s.buf[i:next]); err != nil {
				return err
			}
			start = next
		case le == i: // an empty line ends the event
			if ev := FilterSSEEvent(s.buf[start:next], s.Lists); len(ev) > 0 {
				if err := out.Send(ev); err != nil {
					return err
				}
			}
			start = next
		}
		i = next
	}
	if start > 0 {
		s.buf = append(s.buf[:0], s.buf[start:]...)
		i -= start
	}
	s.evStart = i
	return nil
}

// Held is how many bytes of an incomplete event the stream holds.
func (s *SSEStream) Held() int { return len(s.buf) }

// Tail returns what may be sent of the stream's end once it ended (SSETail), and forgets it.
func (s *SSEStream) Tail() []byte {
	tail := s.buf
	s.buf = nil
	return SSETail(tail)
}

// Drop forgets what the stream holds.
func (s *SSEStream) Drop() { s.buf = nil }

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

// FilterSSEEvent returns the event with the lists of its data filtered, and without the
// lines that are no field clients know: every client ignores those, and they are where a
// client that splits lines another way could have found a message (a JSON line behind a lone
// CR is its own line to eventsource-parser but data to the Go SDK). An event that needs no
// change keeps its bytes. Its data lines are joined with "\n" as clients do.
func FilterSSEEvent(ev []byte, lf *ListFilter) []byte {
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
		if out, changed, err = FilterListsJSON(data, lf); err != nil {
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
