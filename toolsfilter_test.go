package mcpauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
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

func TestFilterToolsJSON(t *testing.T) {
	cases := []struct {
		name, in, want string
		changed        bool
	}{
		{"removes forbidden",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","inputSchema":{}},{"name":"delete"},{"name":"list"}],"nextCursor":"c"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","inputSchema":{}},{"name":"list"}],"nextCursor":"c"}}`, true},
		{"keeps other bytes", "{ \"id\" : 1 ,\n \"result\" : { \"tools\" : [ {\"name\":\"delete\"} , {\"name\" : \"read\"} ] }, \"jsonrpc\":\"2.0\" }",
			"{ \"id\" : 1 ,\n \"result\" : { \"tools\" : [{\"name\" : \"read\"}] }, \"jsonrpc\":\"2.0\" }", true},
		{"all removed", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, true},
		{"nothing to remove", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}`, false},
		{"escaped name", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"dele\u0074e"},{"name":"r\u0065ad"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"r\u0065ad"}]}}`, true},
		{"tool without name removed", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"x"},7,{"name":"read"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}`, true},
		// Not valid JSON-RPC, but a lenient client could read the result: filtered too.
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"delete"}]}}`,
			`{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[]}}`, true},
		{"request with tools in params untouched", `{"jsonrpc":"2.0","id":1,"method":"x","params":{"tools":[{"name":"delete"}]}}`,
			`{"jsonrpc":"2.0","id":1,"method":"x","params":{"tools":[{"name":"delete"}]}}`, false},
		{"notification untouched", `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, false},
		{"batch", `[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"},{"name":"read"}]}},{"jsonrpc":"2.0","id":2,"result":{}}]`,
			`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}},{"jsonrpc":"2.0","id":2,"result":{}}]`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := filterToolsJSON([]byte(tc.in), allowOnly("read", "list"))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want || changed != tc.changed {
				t.Fatalf("got %s (changed %v)\nwant %s (changed %v)", out, changed, tc.want, tc.changed)
			}
		})
	}
	// A result read two ways by two parsers is not passed on.
	for _, bad := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}],"tools":[{"name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}} trailing`,
	} {
		if _, _, err := filterToolsJSON([]byte(bad), allowOnly("read")); err == nil {
			t.Errorf("accepted %s", bad)
		}
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

func newFilterFor(allowed ...string) (*toolsFilter, *flushRecorder) {
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	f := newToolsFilter(rec, nil, nil)
	f.allowed = allowOnly(allowed...)
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
		"data: \"result\":{\"tools\":[{\"name\":\"read\"}]}}\n" +
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
	want := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}`
	if rec.Body.String() != want || rec.Header().Get("Content-Length") != strconv.Itoa(len(want)) || rec.Code != 200 {
		t.Fatalf("got %d %q Content-Length %s", rec.Code, rec.Body.String(), rec.Header().Get("Content-Length"))
	}
}

func TestToolsFilterFailsClosed(t *testing.T) {
	cases := map[string]func(f *toolsFilter){
		"invalid JSON": func(f *toolsFilter) {
			f.Header().Set("Content-Type", "application/json")
			_, _ = f.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"}]`))
		},
		"compressed": func(f *toolsFilter) {
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

func TestToolsFilterPassesOtherAnswers(t *testing.T) {
	cases := []struct {
		status int
		ctype  string
	}{
		{http.StatusAccepted, ""},
		{http.StatusBadRequest, "application/json"},
		{http.StatusOK, "text/plain"},
	}
	for _, tc := range cases {
		f, rec := newFilterFor("read")
		body := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"}]}}`
		if tc.ctype != "" {
			f.Header().Set("Content-Type", tc.ctype)
		}
		f.WriteHeader(tc.status)
		_, _ = f.Write([]byte(body))
		f.finish()
		if rec.Code != tc.status || rec.Body.String() != body {
			t.Errorf("%d %s: got %d %q", tc.status, tc.ctype, rec.Code, rec.Body.String())
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

// TestToolsFilterLoneSurrogates: servers in JavaScript or Python emit lone surrogate escapes
// (a cut-off emoji); their messages pass the filter instead of being dropped, and a tools
// result holding one is still filtered. Requests stay strict (TestReadRPCRefused).
func TestToolsFilterLoneSurrogates(t *testing.T) {
	notification := `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x\ud83d"}}`
	out, changed, err := filterToolsJSON([]byte(notification), allowOnly("read"))
	if err != nil || changed || string(out) != notification {
		t.Fatalf("notification with a lone surrogate: %q changed=%v err=%v", out, changed, err)
	}
	list := `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"read","description":"\udc00"},{"name":"delete\ud800"}]}}`
	out, changed, err = filterToolsJSON([]byte(list), allowOnly("read"))
	if err != nil || !changed || strings.Contains(string(out), "delete") || !strings.Contains(string(out), `"read"`) {
		t.Fatalf("tools with lone surrogates: %q changed=%v err=%v", out, changed, err)
	}
	if _, _, err := filterToolsJSON([]byte(`{"a":"\ud800"`), allowOnly("read")); err == nil {
		t.Fatal("invalid JSON passed")
	}
}

// TestToolsFilterRefusesCaseVariants: "Result", "Tools" and "Name" mean result, tools and
// name to clients that decode with encoding/json; the filter cannot know which reading the
// client uses, so it refuses such answers (502, or the event dropped) instead of passing them.
func TestToolsFilterRefusesCaseVariants(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"Result":{"tools":[{"name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","Name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"NAME":"delete"}]}}`,
	} {
		if out, _, err := filterToolsJSON([]byte(in), allowOnly("read")); err == nil {
			t.Errorf("%s passed as %s", in, out)
		}
	}
}
