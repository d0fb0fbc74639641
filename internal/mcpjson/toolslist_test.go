package mcpjson

import (
	"bytes"
	"encoding/json"
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
			out, changed, err := FilterToolsJSON([]byte(tc.in), allowOnly("read", "list"))
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
		if _, _, err := FilterToolsJSON([]byte(bad), allowOnly("read")); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestToolsFilterLoneSurrogates: servers in JavaScript or Python emit lone surrogate escapes
// (a cut-off emoji); their messages pass the filter instead of being dropped, and a tools
// result holding one is still filtered. Requests stay strict (TestReadRPCRefused).
func TestToolsFilterLoneSurrogates(t *testing.T) {
	notification := `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x\ud83d"}}`
	out, changed, err := FilterToolsJSON([]byte(notification), allowOnly("read"))
	if err != nil || changed || string(out) != notification {
		t.Fatalf("notification with a lone surrogate: %q changed=%v err=%v", out, changed, err)
	}
	list := `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"read","description":"\udc00"},{"name":"delete\ud800"}]}}`
	out, changed, err = FilterToolsJSON([]byte(list), allowOnly("read"))
	if err != nil || !changed || strings.Contains(string(out), "delete") || !strings.Contains(string(out), `"read"`) {
		t.Fatalf("tools with lone surrogates: %q changed=%v err=%v", out, changed, err)
	}
	if _, _, err := FilterToolsJSON([]byte(`{"a":"\ud800"`), allowOnly("read")); err == nil {
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
		if out, _, err := FilterToolsJSON([]byte(in), allowOnly("read")); err == nil {
			t.Errorf("%s passed as %s", in, out)
		}
	}
}

// FuzzFilterToolsJSON: whatever a server answers, what the filter lets through is valid JSON
// in which no result.tools array (as encoding/json reads it, last duplicate winning) still
// lists the forbidden tool.
func FuzzFilterToolsJSON(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete","x":[1,{"a":"b"}]}]}},{"jsonrpc":"2.0","method":"m"}]`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"del\u0065te"}],"nextCursor":"x"}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x\ud83d"}}`,
		`{"result":{"tools":[{"name":"read"}],"tools":[{"name":"delete"}]}}`,
		`{"result":{"Tools":[{"name":"delete"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := FilterToolsJSON(data, func(name string) bool { return name != "delete" })
		if err != nil {
			return // refused: the filter answers 502 or drops the event, nothing passes
		}
		if !json.Valid(out) {
			t.Fatalf("filter output is not valid JSON: %q from %q", out, data)
		}
		// UseNumber: a number beyond float64 (1E1000) is valid JSON and no reason to fail.
		var v any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		msgs, ok := v.([]any)
		if !ok {
			msgs = []any{v}
		}
		for _, m := range msgs {
			obj, _ := m.(map[string]any)
			for rk, res := range obj {
				if !strings.EqualFold(rk, "result") {
					continue
				}
				robj, _ := res.(map[string]any)
				for tk, tools := range robj {
					if !strings.EqualFold(tk, "tools") {
						continue
					}
					list, _ := tools.([]any)
					for _, tool := range list {
						if tm, _ := tool.(map[string]any); tm != nil {
							for nk, name := range tm {
								if strings.EqualFold(nk, "name") && name == "delete" {
									t.Fatalf("forbidden tool passed: %q from %q", out, data)
								}
							}
						}
					}
				}
			}
		}
	})
}
