package mcpjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// allowOnly allows the named entries, of every kind.
func allowOnly(names ...string) *ListFilter {
	return &ListFilter{Kinds: KindsOf(ListTools), Allowed: func(_ ListKind, n string) bool {
		for _, a := range names {
			if a == n {
				return true
			}
		}
		return false
	}}
}

// FilterToolsJSON filters tools lists only, as filter_tools_list does.
func FilterToolsJSON(data []byte, lf *ListFilter) ([]byte, bool, error) {
	return FilterListsJSON(data, lf)
}

func TestFilterToolsJSON(t *testing.T) {
	cases := []struct {
		name, in, want string
		changed        bool
	}{
		{"removes forbidden",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","inputSchema":{}},{"name":"delete"},{"name":"list"}],"nextCursor":"c"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read","inputSchema":{}},{"name":"list"}],"nextCursor":"c"}}`, true},
		{"keeps other bytes", "{ \"id\" : 1 ,\n \"result\" : { \"tools\" : [ {\"name\":\"delete\"} , {\"name\" : \"read\"} ] }, \"jsonrpc\":\"2.0\" }",
			"{ \"id\" : 1 ,\n \"result\" : {\"cacheScope\":\"private\", \"tools\" : [{\"name\" : \"read\"}] }, \"jsonrpc\":\"2.0\" }", true},
		{"all removed", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[]}}`, true},
		// The list is the caller's even when nothing was removed: it says so.
		{"nothing to remove", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`, true},
		{"public scope replaced", `{"jsonrpc":"2.0","id":1,"result":{"ttlMs":5,"cacheScope":"public","tools":[{"name":"read"},{"name":"delete"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"ttlMs":5,"cacheScope":"private","tools":[{"name":"read"}]}}`, true},
		{"scope after list replaced", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"},{"name":"read"}],"cacheScope":7}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}],"cacheScope":"private"}}`, true},
		{"private scope kept", `{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`, false},
		{"escaped name", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"dele\u0074e"},{"name":"r\u0065ad"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"r\u0065ad"}]}}`, true},
		{"tool without name removed", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"x"},7,{"name":"read"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}}`, true},
		// Not valid JSON-RPC, but a lenient client could read the result: filtered too.
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"delete"}]}}`,
			`{"jsonrpc":"2.0","id":1,"method":"x","result":{"cacheScope":"private","tools":[]}}`, true},
		{"request with tools in params untouched", `{"jsonrpc":"2.0","id":1,"method":"x","params":{"tools":[{"name":"delete"}]}}`,
			`{"jsonrpc":"2.0","id":1,"method":"x","params":{"tools":[{"name":"delete"}]}}`, false},
		{"notification untouched", `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, false},
		{"other kinds untouched by the tools filter", `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"delete"}]}}`, `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"delete"}]}}`, false},
		{"batch", `[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete"},{"name":"read"}]}},{"jsonrpc":"2.0","id":2,"result":{}}]`,
			`[{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"read"}]}},{"jsonrpc":"2.0","id":2,"result":{}}]`, true},
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

// forbiddenEntry is what the test filters refuse, by kind: a tool or prompt named delete, the
// resource file:///secret, the template file:///secret/{name}.
var forbiddenEntry = [numListKinds]string{"delete", "delete", "file:///secret", "file:///secret/{name}"}

func allowAllBut() *ListFilter {
	return &ListFilter{Kinds: AllLists, Allowed: func(k ListKind, key string) bool { return key != forbiddenEntry[k] }}
}

// TestFilterLists: each kind of list is filtered by its own entry key, on every page, and says
// cacheScope "private"; JSON and event stream alike.
func TestFilterLists(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"prompts",
			`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"review","arguments":[{"name":"delete"}]},{"name":"delete"}],"nextCursor":"p2"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","prompts":[{"name":"review","arguments":[{"name":"delete"}]}],"nextCursor":"p2"}}`},
		{"resources by uri, not name",
			`{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///secret","name":"ok"},{"uri":"file:///pub","name":"delete"}],"nextCursor":"r2"}}`,
			`{"jsonrpc":"2.0","id":2,"result":{"cacheScope":"private","resources":[{"uri":"file:///pub","name":"delete"}],"nextCursor":"r2"}}`},
		{"templates by uriTemplate",
			`{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"file:///secret/{name}","name":"s"},{"uriTemplate":"file:///pub/{name}","name":"p"},{"name":"no template"}]}}`,
			`{"jsonrpc":"2.0","id":3,"result":{"cacheScope":"private","resourceTemplates":[{"uriTemplate":"file:///pub/{name}","name":"p"}]}}`},
		{"last page, nothing removed",
			`{"jsonrpc":"2.0","id":4,"result":{"resources":[{"uri":"file:///pub"}]}}`,
			`{"jsonrpc":"2.0","id":4,"result":{"cacheScope":"private","resources":[{"uri":"file:///pub"}]}}`},
		{"empty page", `{"jsonrpc":"2.0","id":5,"result":{"prompts":[]}}`, `{"jsonrpc":"2.0","id":5,"result":{"cacheScope":"private","prompts":[]}}`},
		{"a resource without uri removed", `{"jsonrpc":"2.0","id":6,"result":{"resources":[{"name":"x"},{"uri":7},{"uri":"a:b"}]}}`,
			`{"jsonrpc":"2.0","id":6,"result":{"cacheScope":"private","resources":[{"uri":"a:b"}]}}`},
		{"two lists in one result", `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"delete"}],"cacheScope":"public","prompts":[{"name":"delete"},{"name":"x"}]}}`,
			`{"jsonrpc":"2.0","id":7,"result":{"tools":[],"cacheScope":"private","prompts":[{"name":"x"}]}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := FilterListsJSON([]byte(tc.in), allowAllBut())
			if err != nil || !changed || string(out) != tc.want {
				t.Fatalf("got %s (changed %v, %v)\nwant %s", out, changed, err, tc.want)
			}
			// The same message as an event of a stream.
			ev := FilterSSEEvent([]byte("event: message\nid: 9\ndata: "+tc.in+"\n\n"), allowAllBut())
			if want := "event: message\nid: 9\ndata: " + tc.want + "\n\n"; string(ev) != want {
				t.Fatalf("event: got %q\nwant %q", ev, want)
			}
		})
	}
}

// TestFilterListsRefusesCaseVariants: keys that encoding/json-based clients read as a list, an
// entry key or cacheScope, and duplicates, make the answer unreadable: refused.
func TestFilterListsRefusesCaseVariants(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"Prompts":[{"name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Resources":[{"uri":"file:///secret"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resourcetemplates":[{"uriTemplate":"file:///secret/{name}"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"URI":"file:///secret"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///pub","Uri":"file:///secret"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uritemplate":"file:///secret/{name}"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///pub","uri":"file:///secret"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[],"CacheScope":"public"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[],"cacheScope":"public","cacheScope":"public"}}`,
	} {
		if out, _, err := FilterListsJSON([]byte(in), allowAllBut()); err == nil {
			t.Errorf("%s passed as %s", in, out)
		}
		if ev := FilterSSEEvent([]byte("data: "+in+"\n\n"), allowAllBut()); ev != nil {
			t.Errorf("%s passed in an event as %q", in, ev)
		}
	}
}

// FuzzFilterLists: whatever a server answers, what the filter lets through is valid JSON in
// which no list (as encoding/json reads it: keys in any case, last duplicate winning) still
// holds a forbidden entry, and every result that holds a list says cacheScope "private".
func FuzzFilterLists(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete","x":[1,{"a":"b"}]}]}},{"jsonrpc":"2.0","method":"m"}]`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"del\u0065te"}],"nextCursor":"x"}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x\ud83d"}}`,
		`{"result":{"tools":[{"name":"read"}],"tools":[{"name":"delete"}]}}`,
		`{"result":{"Tools":[{"name":"delete"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"delete"}],"cacheScope":"public","nextCursor":"n"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///secret","name":"delete"},{"uri":"file:///pub"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"file:///secret/{name}"}],"ttlMs":0}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Resources":[{"uri":"file:///secret"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := FilterListsJSON(data, allowAllBut())
		if err != nil {
			return // refused: the filter answers 502 or drops the event, nothing passes
		}
		if !json.Valid(out) {
			t.Fatalf("filter output is not valid JSON: %q from %q", out, data)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber() // numbers out of float64's range are valid JSON
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
				listed := false
				for lk, entries := range robj {
					for k := range numListKinds {
						if !strings.EqualFold(lk, listKeys[k].result) {
							continue
						}
						list, isList := entries.([]any)
						listed = listed || isList
						for _, e := range list {
							em, _ := e.(map[string]any)
							for ek, key := range em {
								if strings.EqualFold(ek, listKeys[k].entry) && key == forbiddenEntry[k] {
									t.Fatalf("forbidden entry passed: %q from %q", out, data)
								}
							}
						}
					}
				}
				if !listed {
					continue
				}
				for sk, scope := range robj {
					if strings.EqualFold(sk, "cacheScope") && scope != "private" {
						t.Fatalf("a filtered list says cacheScope %v: %q from %q", scope, out, data)
					}
				}
				if robj["cacheScope"] != "private" {
					t.Fatalf("a filtered list without cacheScope private: %q from %q", out, data)
				}
			}
		}
	})
}
