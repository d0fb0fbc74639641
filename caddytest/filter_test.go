package integration

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcptest"
)

// filter_tools_list against a server whose tools/list answers are crafted: every answer an
// official client reads as the result reaches it filtered, or is refused with 502. The token
// has mcp:read; delete_* tools need mcp:admin, so delete_file must never reach the client.

// filterAuth is the policy of these tests; the list guard follows it (filter_tools_list here,
// public in TestPublicToolsListAnswers).
const filterAuth = `resource_name "Filter MCP"
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
`

// craftedList is a tools/list result; @ID@ becomes the id of the request it answers.
const craftedList = `{"jsonrpc":"2.0","id":@ID@,"result":{"tools":[` +
	`{"name":"read_file","inputSchema":{"type":"object"}},{"name":"delete_file","inputSchema":{"type":"object"}}]}}`

// crafted is an answer of the crafted server.
type crafted struct {
	status int
	ctype  string // "" sends no Content-Type at all (net/http does not sniff one)
	body   string // @LIST@ becomes craftedList
	coding string // Content-Encoding: "gzip" compresses the body, others are only claimed
}

// craftedUpstream answers initialize as an MCP server would, notifications with 202, and
// tools/list (and GET, when get is set) with the crafted answer.
type craftedUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	answer crafted
	get    bool
}

func newCraftedUpstream(t *testing.T) *craftedUpstream {
	t.Helper()
	u := &craftedUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		a, get := u.answer, u.get
		u.mu.Unlock()
		if r.Method == http.MethodGet {
			if !get {
				http.Error(w, "no stream", http.StatusMethodNotAllowed)
				return
			}
			writeCrafted(w, a, "0")
			return
		}
		body, _ := io.ReadAll(r.Body)
		var msg struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
		}
		_ = json.Unmarshal(body, &msg)
		switch msg.Method {
		case "initialize":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"protocolVersion":"2025-06-18",`+
				`"capabilities":{"tools":{}},"serverInfo":{"name":"crafted","version":"1"}}}`)
		case "tools/list":
			writeCrafted(w, a, string(msg.ID))
		default:
			if msg.ID == nil {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			// server/discover and the like: unknown here, as to a 2025-06-18 server.
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"error":{"code":-32601,"message":"method not found"}}`)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func writeCrafted(w http.ResponseWriter, a crafted, id string) {
	if a.ctype == "" {
		w.Header()["Content-Type"] = nil
	} else {
		w.Header()["Content-Type"] = []string{a.ctype}
	}
	body := []byte(strings.ReplaceAll(a.body, "@LIST@", strings.ReplaceAll(craftedList, "@ID@", id)))
	if a.coding == "gzip" {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = b.Bytes()
	}
	if a.coding != "" {
		w.Header().Set("Content-Encoding", a.coding)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(body)
}

func (u *craftedUpstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

func (u *craftedUpstream) set(a crafted, get bool) {
	u.mu.Lock()
	u.answer, u.get = a, get
	u.mu.Unlock()
}

// getStream sends the GET that opens (or resumes) an event stream and returns the answer.
func (f *fixture) getStream(t *testing.T, token string) (int, []byte) {
	t.Helper()
	code, _, body := f.do(t, attackReq{method: http.MethodGet, auth: []string{bearer(token)}, noSession: true,
		header: []string{"Accept: text/event-stream", "Last-Event-ID: 1_0"}})
	return code, body
}

// TestToolsListAnswersThroughCaddy: the answers an outside review got past the filter (issue
// 10: an event stream starting with a BOM, statuses 201 and 203) and their relatives: other
// 2xx, spellings of the content type, CR framing, error statuses, GET streams. Each is
// filtered (the status kept, read_file still there) or refused with 502; delete_file never
// appears in what the client gets.
func TestToolsListAnswersThroughCaddy(t *testing.T) {
	up := newCraftedUpstream(t)
	f := newFixture(t, up)
	token := f.token(t, "mcp:read", nil)
	f.start(t, f.caddyfile(filterAuth+"filter_tools_list"), "caddyfile", "Filter MCP")

	const (
		sse      = "event: message\nid: 1_0\ndata: @LIST@\n\n"
		refused  = http.StatusBadGateway
		hidden   = "delete_file"
		visible  = "read_file"
		listBody = "@LIST@"
	)
	cases := []struct {
		name string
		get  bool
		crafted
		want int // the status the client gets: the crafted one (filtered) or 502
	}{
		{"SSE starting with a UTF-8 BOM", false, crafted{200, "text/event-stream", "\xEF\xBB\xBF" + sse, ""}, 200},
		{"SSE starting with a UTF-8 BOM before its data", false, crafted{200, "text/event-stream", "\xEF\xBB\xBFdata: @LIST@\n\n", ""}, 200},
		{"SSE starting with the BOM read as Latin-1", false, crafted{200, "text/event-stream", "\xC3\xAF\xC2\xBB\xC2\xBFdata: @LIST@\n\n", ""}, 200},
		{"JSON 201", false, crafted{201, "application/json", listBody, ""}, 201},
		{"JSON 203", false, crafted{203, "application/json", listBody, ""}, 203},
		{"SSE 201", false, crafted{201, "text/event-stream", sse, ""}, 201},
		{"SSE 203", false, crafted{203, "text/event-stream", sse, ""}, 203},
		{"JSON 202, which the Go SDK reads", false, crafted{202, "application/json", listBody, ""}, 202},
		{"JSON 200 with charset", false, crafted{200, "application/json;charset=utf-8", listBody, ""}, 200},
		{"JSON 200 in capitals", false, crafted{200, "Application/JSON ; Charset=UTF-8", listBody, ""}, 200},
		{"SSE 200 with charset", false, crafted{200, "text/event-stream; charset=utf-8", sse, ""}, 200},
		{"JSON 200 with a Latin-1 NBSP", false, crafted{200, "application/json\xa0", listBody, ""}, 200},
		{"JSON 200 after a BOM", false, crafted{200, "application/json", "\xEF\xBB\xBF" + listBody, ""}, 200},
		{"JSON 200 without a type", false, crafted{200, "", listBody, ""}, refused},
		{"JSON 200 as text/plain", false, crafted{200, "text/plain", listBody, ""}, refused},
		{"JSON 200 as application/json-seq", false, crafted{200, "application/json-seq", listBody, ""}, refused},
		{"SSE with CR framing", false, crafted{200, "text/event-stream", "event: message\rid: 1_0\rdata: @LIST@\r\r", ""}, 200},
		{"SSE with JSON behind a lone CR", false, crafted{200, "text/event-stream", "data: \r@LIST@\n\n", ""}, 200},
		{"SSE event left open", false, crafted{200, "text/event-stream", "data: @LIST@", ""}, 200},
		{"JSON 400", false, crafted{400, "application/json", listBody, ""}, 400},
		{"SSE 500", false, crafted{500, "text/event-stream", sse, ""}, 500},
		// Caddy's proxy transport asks for gzip itself and decodes it; any other coding is
		// passed on, and the filter cannot read it.
		{"gzip JSON, decoded by the proxy", false, crafted{200, "application/json", listBody, "gzip"}, 200},
		{"br JSON", false, crafted{200, "application/json", listBody, "br"}, refused},
		{"zstd SSE", false, crafted{200, "text/event-stream", sse, "zstd"}, refused},
		{"GET stream as text/plain", true, crafted{200, "text/plain", sse, ""}, 200},
		{"GET stream without a type", true, crafted{200, "", sse, ""}, 200},
		{"GET answered in JSON", true, crafted{200, "application/json", listBody, ""}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up.set(tc.crafted, tc.get)
			c := newMCPClient(t)
			var code int
			var body []byte
			if tc.get {
				code, body = f.getStream(t, token)
			} else {
				code, _, body = c.post(t, token, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), false, nil)
			}
			if bytes.Contains(body, []byte(hidden)) {
				t.Fatalf("status %d: %s reached the client:\n%q", code, hidden, body)
			}
			if code != tc.want {
				t.Fatalf("status %d, want %d; body %q", code, tc.want, body)
			}
			// No client reads a result from these two: nothing of them is left.
			lost := strings.Contains(tc.name, "lone CR") || strings.Contains(tc.name, "left open")
			if tc.want != refused && !lost && !bytes.Contains(body, []byte(visible)) {
				t.Errorf("the allowed tool was lost: %q", body)
			}
		})
	}

	// The Go SDK client itself: it reads a 202 to a call, and splits event streams at LF
	// only, so JSON behind a lone CR is data to it.
	for _, sc := range []struct {
		crafted
		want []string // nil: no result, or one without the hidden tool
	}{
		{crafted{202, "application/json", listBody, ""}, []string{visible}},
		{crafted{200, "text/event-stream", "\xEF\xBB\xBFdata: @LIST@\n\n", ""}, []string{visible}},
		{crafted{200, "text/event-stream", "data: \r@LIST@\n\n", ""}, nil},
	} {
		up.set(sc.crafted, false)
		cs := newMCPClient(t).connect(t, token)
		res, err := cs.ListTools(t.Context(), nil)
		var names []string
		if err == nil {
			for _, tool := range res.Tools {
				names = append(names, tool.Name)
			}
		}
		if slices.Contains(names, hidden) || sc.want != nil && !slices.Equal(names, sc.want) {
			t.Errorf("Go SDK client lists %v (error %v) from %d %q %q, want %v", names, err, sc.status, sc.ctype, sc.body, sc.want)
		}
	}
	up.set(crafted{200, "text/event-stream", sse, ""}, false)
	if got := mcptest.ToolNames(t, newMCPClient(t).connect(t, token)); !slices.Equal(got, []string{visible}) {
		t.Errorf("Go SDK client lists %v, want [%s]", got, visible)
	}
}
