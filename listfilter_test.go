package mcpauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// allowOnly allows the named tools.
func allowOnly(names ...string) func(string) bool {
	return func(n string) bool {
		for _, a := range names {
			if a == n {
				return true
			}
		}
		return false
	}
}

// flushRecorder counts flushes and what had been written at each.
type flushRecorder struct {
	*httptest.ResponseRecorder
	flushedAt []string
}

func (f *flushRecorder) Flush() {
	f.flushedAt = append(f.flushedAt, f.Body.String())
	f.ResponseRecorder.Flush()
}

func newFilterFor(allowed ...string) (*listFilter, *flushRecorder) {
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	f := newListFilter(rec, nil, nil, mcpjson.KindsOf(mcpjson.ListTools))
	only := allowOnly(allowed...)
	f.lists.Allowed = func(_ mcpjson.ListKind, name string) bool { return only(name) }
	return f, rec
}

func TestToolsFilterSSE(t *testing.T) {
	stream := "id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"tools\":[{\"name\":\"delete\"}]}}\r\n\r\n" +
		": a comment\n" +
		"id: 2\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\n" +
		"data: \"result\":{\"tools\":[{\"name\":\"delete\"},{\"name\":\"read\"}]}}\n" +
		"retry: 100\n\n" +
		"id: 3\ndata:\n\n"
	want := "id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"tools\":[{\"name\":\"delete\"}]}}\r\n\r\n" +
		": a comment\n" +
		"id: 2\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\n" +
		"data: \"result\":{\"cacheScope\":\"private\",\"tools\":[{\"name\":\"read\"}]}}\n" +
		"retry: 100\n\n" +
		"id: 3\ndata:\n\n"
	for _, chunk := range []int{1, 7, len(stream)} {
		t.Run("chunk "+strconv.Itoa(chunk), func(t *testing.T) {
			f, rec := newFilterFor("read")
			f.Header().Set("Content-Type", "text/event-stream")
			f.Header().Set("Content-Length", "999")
			f.WriteHeader(http.StatusOK)
			for i := 0; i < len(stream); i += chunk {
				if _, err := f.Write([]byte(stream[i:min(i+chunk, len(stream))])); err != nil {
					t.Fatal(err)
				}
			}
			f.finish()
			if got := rec.Body.String(); got != want {
				t.Fatalf("stream\n got %q\nwant %q", got, want)
			}
			if rec.Header().Get("Content-Length") != "" {
				t.Error("Content-Length left on a rewritten stream")
			}
			// Every event was flushed as soon as it was complete.
			if len(rec.flushedAt) < 3 {
				t.Fatalf("flushed %d times", len(rec.flushedAt))
			}
			first := rec.flushedAt[0]
			if !strings.HasSuffix(first, "\r\n\r\n") || strings.Contains(first, "id: 2") {
				t.Fatalf("first flush carried %q", first)
			}
		})
	}
}

func TestToolsFilterSSEIncompleteEventDropped(t *testing.T) {
	f, rec := newFilterFor("read")
	f.Header().Set("Content-Type", "text/event-stream")
	_, _ = f.Write([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete\"}]}}\n"))
	f.finish()
	if strings.Contains(rec.Body.String(), "delete") {
		t.Fatalf("unfinished event passed: %q", rec.Body.String())
	}
}

func TestToolsFilterJSON(t *testing.T) {
	body := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"},{"name":"read"}]}}`
	f, rec := newFilterFor("read")
	f.Header().Set("Content-Type", "application/json")
	f.Header().Set("Content-Length", strconv.Itoa(len(body)))
	f.WriteHeader(http.StatusOK)
	// A copy through io.Copy must not bypass the filter (ReadFrom).
	if _, err := io.Copy(f, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	f.Flush() // a JSON answer is never sent in part
	if rec.Body.Len() != 0 {
		t.Fatal("JSON sent before the end")
	}
	f.finish()
	want := `{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`
	if rec.Body.String() != want || rec.Header().Get("Content-Length") != strconv.Itoa(len(want)) || rec.Code != 200 {
		t.Fatalf("got %d %q Content-Length %s", rec.Code, rec.Body.String(), rec.Header().Get("Content-Length"))
	}
}

func TestToolsFilterFailsClosed(t *testing.T) {
	cases := map[string]func(f *listFilter){
		"invalid JSON": func(f *listFilter) {
			f.Header().Set("Content-Type", "application/json")
			_, _ = f.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"}]`))
		},
		"compressed": func(f *listFilter) {
			f.Header().Set("Content-Type", "application/json")
			f.Header().Set("Content-Encoding", "gzip")
			_, _ = f.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"}]}}`))
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			f, rec := newFilterFor("read")
			run(f)
			f.finish()
			if rec.Code != http.StatusBadGateway || strings.Contains(rec.Body.String(), "delete") {
				t.Fatalf("got %d %q", rec.Code, rec.Body.String())
			}
		})
	}
}

// TestToolsFilterAnswers: which answers are filtered, refused or passed, by status, type and
// method (docs/filter.md). Every 2xx is a result to some client (the Go SDK reads a 202 to a
// call); error bodies reach the application in the TypeScript SDK's error text; a GET is an
// event stream to the TypeScript SDK whatever its type.
func TestToolsFilterAnswers(t *testing.T) {
	const (
		list     = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}}`
		filtered = `{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`
		sse      = "event: message\ndata: " + list + "\n\n"
		sseOut   = "event: message\ndata: " + filtered + "\n\n"
		bom      = "\xEF\xBB\xBF"
		refused  = ""
	)
	cases := []struct {
		name     string
		get      bool
		status   int
		ctype    string
		body     string
		wantCode int
		want     string // refused: 502
	}{
		{"200 JSON", false, 200, "application/json", list, 200, filtered},
		{"201 JSON", false, 201, "application/json", list, 201, filtered},
		{"203 SSE", false, 203, "text/event-stream", sse, 203, sseOut},
		{"202 JSON, read by the Go SDK", false, 202, "application/json", list, 202, filtered},
		{"202 SSE", false, 202, "text/event-stream", sse, 202, sseOut},
		{"202 Accepted of the 2024-11-05 transport", false, 202, "", "Accepted", 202, "Accepted"},
		{"206 SSE", false, 206, "text/event-stream", sse, 206, sseOut},
		{"JSON with charset", false, 200, "application/json;charset=utf-8", list, 200, filtered},
		{"JSON in capitals", false, 200, "Application/JSON; Charset=UTF-8", list, 200, filtered},
		{"SSE with spaces and charset", false, 200, "  text/event-stream ;charset=iso-8859-1", sse, 200, sseOut},
		{"JSON with broken parameters", false, 200, "application/json; charset=", list, 200, filtered},
		{"JSON then a Latin-1 NBSP", false, 200, "application/json\xa0", list, 200, filtered},
		{"JSON with U+0130, Go lowercases it to i", false, 200, "appl\u0130cation/json", list, 200, filtered},
		{"JSON after a BOM", false, 200, "application/json", bom + list, 200, bom + filtered},
		{"JSON after two BOMs", false, 200, "application/json", bom + bom + list, 502, refused},
		{"JSON not a message", false, 200, "application/json", `"ok"`, 200, `"ok"`},
		{"JSON empty", false, 200, "application/json", "", 200, ""},
		{"JSON invalid", false, 200, "application/json", list[:len(list)-1], 502, refused},
		{"JSON with trailing data", false, 200, "application/json", list + list, 502, refused},
		{"text/plain", false, 200, "text/plain", list, 502, refused},
		{"no type", false, 200, "", list, 502, refused},
		{"no type, no body", false, 200, "", "", 200, ""},
		{"application/jsonl", false, 201, "application/jsonl", list, 502, refused},
		{"json-seq", false, 200, "application/json-seq", list, 502, refused},
		{"400 JSON", false, 400, "application/json", list, 400, filtered},
		{"500 SSE", false, 500, "text/event-stream", sse, 500, sseOut},
		{"500 broken JSON", false, 500, "application/json", "{", 502, refused},
		{"404 text passes as error text", false, 404, "text/plain", "not found", 404, "not found"},
		{"302 HTML", false, 302, "text/html", "<a href=/x>moved</a>", 302, "<a href=/x>moved</a>"},
		{"204 JSON type, no body", false, 204, "application/json", "", 204, ""},
		{"GET SSE", true, 200, "text/event-stream", sse, 200, sseOut},
		{"GET text/plain read as SSE", true, 200, "text/plain", sse, 200, sseOut},
		{"GET without type read as SSE", true, 200, "", sse, 200, sseOut},
		{"GET 202 read as SSE", true, 202, "", sse, 202, sseOut},
		{"GET JSON", true, 200, "application/json", list, 200, filtered},
		{"GET JSON holding an event stream", true, 200, "application/json", sse, 502, refused},
		{"GET 405 text", true, 405, "text/plain", "no", 405, "no"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, rec := newFilterFor("read")
			f.sseOnly = tc.get
			if tc.ctype != "" {
				f.Header().Set("Content-Type", tc.ctype)
			}
			f.Header().Set("Content-Length", strconv.Itoa(len(tc.body)))
			f.WriteHeader(tc.status)
			if tc.body != "" {
				if _, err := f.Write([]byte(tc.body)); err != nil {
					t.Fatal(err)
				}
			}
			f.finish()
			got := rec.Body.String()
			if tc.want == refused && tc.wantCode == http.StatusBadGateway {
				if rec.Code != http.StatusBadGateway || strings.Contains(got, "delete") {
					t.Fatalf("got %d %q, want 502", rec.Code, got)
				}
				return
			}
			if rec.Code != tc.wantCode || got != tc.want {
				t.Fatalf("got %d %q\nwant %d %q", rec.Code, got, tc.wantCode, tc.want)
			}
			if cl := rec.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(got)) {
				t.Errorf("Content-Length %s for %d bytes", cl, len(got))
			}
		})
	}
}

// TestToolsFilterSSEFraming: byte-order marks, line ends and fields as the clients read them.
// What reaches the client has no mark at its start and no lone CR, so that eventsource-parser
// (CR, LF and CRLF end a line) and the Go SDK (LF only) see the same lines as the filter.
func TestToolsFilterSSEFraming(t *testing.T) {
	const (
		list     = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}}`
		filtered = `{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`
		note     = `{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}`
	)
	cases := []struct{ name, in, want string }{
		{"UTF-8 BOM", "\xEF\xBB\xBFdata: " + list + "\n\n", "data: " + filtered + "\n\n"},
		{"BOM read as Latin-1", "\xC3\xAF\xC2\xBB\xC2\xBFdata: " + list + "\n\n", "data: " + filtered + "\n\n"},
		{"both marks", "\xEF\xBB\xBF\xC3\xAF\xC2\xBB\xC2\xBFevent: message\ndata: " + list + "\n\n", "event: message\ndata: " + filtered + "\n\n"},
		{"two BOMs", "\xEF\xBB\xBF\xEF\xBB\xBFdata: " + list + "\n\n", "data: " + filtered + "\n\n"},
		{"BOM before a comment", "\xEF\xBB\xBF: hi\n\ndata: " + note + "\n\n", ": hi\n\ndata: " + note + "\n\n"},
		{"BOM only at the start", "data: " + note + "\n\n\xEF\xBB\xBFdata: " + list + "\n\n", "data: " + note + "\n\n"},
		// Past the start a mark is part of the line: an unknown field, dropped, also when the
		// events before it were dropped and it would come first.
		{"BOM line first after a dropped event", "data: {\n\n\xEF\xBB\xBFdata: " + list + "\n\n", ""},
		{"CR framing", "event: message\rdata: " + list + "\r\r", "event: message\ndata: " + filtered + "\n\n"},
		{"CR framing, unchanged event", "id: 1\rdata: " + note + "\r\r", "id: 1\ndata: " + note + "\n\n"},
		{"CRLF kept", "id: 1\r\ndata: " + note + "\r\n\r\n", "id: 1\r\ndata: " + note + "\r\n\r\n"},
		{"CR then CRLF", "data: " + list + "\r\r\n", "data: " + filtered + "\n\n"},
		// The Go SDK splits at LF only and trims the data: this is data "{...}" to it.
		{"JSON behind a lone CR", "data: \r" + list + "\n\n", "data: \n\n"},
		{"unknown fields dropped", "foo: " + list + "\ndata: " + note + "\n\n", "data: " + note + "\n\n"},
		{"only unknown fields", "{\"a\":1}\n\n", ""},
		{"data without space", "data:" + list + "\n\n", "data: " + filtered + "\n\n"},
		{"multi-line data", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\ndata:  \"result\":{\"tools\":[{\"name\":\"delete\"}]}}\n\n",
			"data: {\"jsonrpc\":\"2.0\",\"id\":1,\ndata:  \"result\":{\"cacheScope\":\"private\",\"tools\":[]}}\n\n"},
		{"event names do not matter", "event: other\ndata: " + list + "\n\n", "event: other\ndata: " + filtered + "\n\n"},
		// The Go SDK trims Unicode white space from data lines; JSON does not allow it.
		{"NBSP before JSON", "data: \u00a0" + list + "\n\n", ""},
		{"NBSP line before JSON", "data: \u00a0\ndata: " + list + "\n\n", ""},
		{"plain text passes", "event: endpoint\ndata: /messages?sessionId=abc\n\n", "event: endpoint\ndata: /messages?sessionId=abc\n\n"},
		{"retry and id", "retry: 100\nid: 7\ndata: " + list + "\n\n", "retry: 100\nid: 7\ndata: " + filtered + "\n\n"},
		// The Go SDK dispatches the event left open at the end of the stream; WHATWG does not.
		{"open event with data dropped", "data: " + list, ""},
		{"open event with data and LF dropped", "data: " + list + "\n", ""},
		{"open event without data passes", "id: 3\nretry: 5", "id: 3\nretry: 5"},
		{"open event ending in CR", "id: 3\r", "id: 3\n"},
	}
	for _, tc := range cases {
		for _, chunk := range []int{1, 2, 5, len(tc.in)} {
			f, rec := newFilterFor("read")
			f.Header().Set("Content-Type", "text/event-stream")
			f.WriteHeader(http.StatusOK)
			for i := 0; i < len(tc.in); i += chunk {
				if _, err := f.Write([]byte(tc.in[i:min(i+chunk, len(tc.in))])); err != nil {
					t.Fatal(err)
				}
			}
			f.finish()
			if got := rec.Body.String(); got != tc.want {
				t.Errorf("%s (writes of %d):\n got %q\nwant %q", tc.name, chunk, got, tc.want)
			}
		}
	}
}

func TestAnswerKind(t *testing.T) {
	for ct, want := range map[string]answerKind{
		"application/json":                   kindJSON,
		"APPLICATION/JSON":                   kindJSON,
		" application/json ; charset=utf-8":  kindJSON,
		"application/json;charset=\"utf-8\"": kindJSON,
		"application/json\v":                 kindJSON,
		"\xa0application/json\xa0":           kindJSON,
		"application/json\u00a0":             kindJSON,
		"text/event-stream":                  kindSSE,
		"Text/Event-Stream;charset=utf-8":    kindSSE,
		"":                                   kindOther,
		"text/plain":                         kindOther,
		"application/json-seq":               kindOther,
		"application/*":                      kindOther,
		"application/json, text/html":        kindOther,
		"application / json":                 kindOther,
	} {
		if got := answerKindOf(ct); got != want {
			t.Errorf("answerKindOf(%q) = %d, want %d", ct, got, want)
		}
	}
}

// TestToolsFilterGETStreams: on a GET stream (sseOnly) events that are no JSON-RPC message
// (the 2024-11-05 transport's endpoint event, plain text) and keep-alive comments pass as
// they are, a tools result is still filtered, and a JSON answer passes untouched.
func TestToolsFilterGETStreams(t *testing.T) {
	f, rec := newFilterFor("read")
	f.sseOnly = true
	f.Header().Set("Content-Type", "text/event-stream")
	f.WriteHeader(http.StatusOK)
	in := "event: endpoint\ndata: /messages?sessionId=abc\n\n" +
		": keepalive\n" +
		"data: hello world\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"read\"},{\"name\":\"delete\"}]}}\n\n"
	if _, err := f.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	f.finish()
	got := rec.Body.String()
	for _, want := range []string{"event: endpoint\ndata: /messages?sessionId=abc\n\n", ": keepalive\n", "data: hello world\n\n", `"name":"read"`} {
		if !strings.Contains(got, want) {
			t.Errorf("stream lost %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "delete") {
		t.Errorf("forbidden tool passed:\n%s", got)
	}

	f, rec = newFilterFor("read")
	f.sseOnly = true
	body := `"ok"`
	f.Header().Set("Content-Type", "application/json")
	f.WriteHeader(http.StatusOK)
	_, _ = f.Write([]byte(body))
	f.finish()
	if rec.Code != http.StatusOK || rec.Body.String() != body {
		t.Errorf("GET JSON answer: %d %q, want 200 %q", rec.Code, rec.Body.String(), body)
	}
}
