package mcpjson

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestSchemesRewrite: every tool kept carries the resource's securitySchemes at its top level
// and in _meta, whatever the server wrote there and however it spaced it; the rest of the
// entry is kept.
func TestSchemesRewrite(t *testing.T) {
	const s = `[{"type":"noauth"}]`
	lf := &ListFilter{Kinds: KindsOf(ListTools), Allowed: func(_ ListKind, name string) bool { return name != "hidden" },
		Schemes: func(string) []byte { return []byte(s) }}
	want := func(extra string) string {
		return `{"name":"t","securitySchemes":` + s + `,"_meta":{` + extra + `"securitySchemes":` + s + `}}`
	}
	for _, c := range []struct{ entry, want string }{
		{`{"name":"t"}`, want("")},
		{`{ "name" : "t" }`, want("")},
		{`{"securitySchemes":[{"type":"x"}],"name":"t"}`, want("")},
		{`{"securitySchemes" : [{"type":"x"}] , "name":"t"}`, want("")},
		{`{"name":"t","securitySchemes":[{"type":"x"}]}`, want("")},
		{`{"name":"t" , "securitySchemes":[] }`, want("")},
		{`{"name":"t","_meta":null}`, want("")},
		{`{"name":"t","_meta":[1,2]}`, want("")},
		{`{"name":"t","_meta":{}}`, want("")},
		{`{"name":"t","_meta":{"securitySchemes":[{"type":"x"}]}}`, want("")},
		{`{"name":"t","_meta":{"securitySchemes":[{"type":"x"}],"v":1}}`, want(`"v":1,`)},
		{`{"name":"t","_meta":{"v":1 , "securitySchemes":[{"type":"x"}]}}`, want(`"v":1,`)},
		{`{"n\u0061me":"t","_meta":{"a":{"securitySchemes":1}}}`, want(`"a":{"securitySchemes":1},`)},
	} {
		body := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + c.entry + `,{"name":"hidden"},{"nameless":1}]}}`
		out, changed, err := FilterListsJSON([]byte(body), lf)
		if err != nil || !changed {
			t.Errorf("%s: changed %v, error %v", c.entry, changed, err)
			continue
		}
		var got struct {
			Result struct {
				CacheScope string            `json:"cacheScope"`
				Tools      []json.RawMessage `json:"tools"`
			} `json:"result"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Errorf("%s: output %s is not JSON: %v", c.entry, out, err)
			continue
		}
		if got.Result.CacheScope != "private" || len(got.Result.Tools) != 1 {
			t.Errorf("%s: output %s: want one tool and cacheScope private", c.entry, out)
			continue
		}
		var g, w any
		_ = json.Unmarshal(got.Result.Tools[0], &g)
		_ = json.Unmarshal([]byte(c.want), &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %s\nwant %s", c.entry, got.Result.Tools[0], c.want)
		}
	}
	for _, bad := range []string{
		`{"name":"t","SecuritySchemes":[]}`, `{"name":"t","_Meta":{}}`, `{"Name":"t"}`,
		`{"name":"t","_meta":{"securityschemes":[]}}`, `{"name":"t","securitySchemes":[],"securitySchemes":[]}`,
		`{"name":"t","_meta":{"securitySchemes":[],"securitySchemes":[]}}`, `{"name":"t",}`,
	} {
		body := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + bad + `]}}`
		if out, _, err := FilterListsJSON([]byte(body), lf); err == nil {
			t.Errorf("%s: rewritten to %s, want an error", bad, out)
		}
	}
	// Without Schemes, nothing of an entry changes (filter_lists as before).
	lf.Schemes = nil
	body := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t","securitySchemes":[1]}]}}`
	out, _, err := FilterListsJSON([]byte(body), lf)
	if err != nil || !strings.Contains(string(out), `{"name":"t","securitySchemes":[1]}`) {
		t.Errorf("without Schemes: %s, %v", out, err)
	}
}

// FuzzSchemesRewrite: whatever a server answers, what the rewrite lets through is valid JSON
// in which every tool of a tools list (as encoding/json reads it: keys in any case) carries
// the resource's securitySchemes at its top level and in _meta, and never the server's.
func FuzzSchemesRewrite(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","securitySchemes":[{"type":"bogus"}]},{"name":"b","_meta":{"securitySchemes":1,"x":2}}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{ "securitySchemes" : 1 , "name":"a" , "_meta" : null }]}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"nextCursor":"c"}},{"jsonrpc":"2.0","method":"m"}]`,
		`{"result":{"tools":[{"name":"a","_meta":{"securitySchemes":[],"securitySchemes":[]}}]}}`,
	} {
		f.Add([]byte(s))
	}
	// Tools whose name starts with "h" are hidden, others kept, entries without a string name
	// dropped: removals at the start, middle and end of a list keep it valid JSON.
	for _, s := range []string{
		`{"result":{"tools":[{"name":"h1"},{"name":"a"},{"name":"h2"},{"name":"b"},{"name":"h3"}]}}`,
		`{"result":{"tools":[ {"name":"h"} , {"name":"h"} ],"cacheScope":"public"}}`,
		`{"result":{"cacheScope":"private","tools":[1,{"name":"a","_meta":[]},2, {"name":"h"} ]}}`,
	} {
		f.Add([]byte(s))
	}
	const want = `[{"type":"noauth"}]`
	wantBytes := []byte(want) // one shared value, as the policy returns them
	lf := &ListFilter{Kinds: KindsOf(ListTools), Allowed: func(_ ListKind, name string) bool { return !strings.HasPrefix(name, "h") },
		Schemes: func(string) []byte { return wantBytes }}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := FilterListsJSON(data, lf)
		if err != nil {
			return // refused: 502, nothing passes
		}
		if !json.Valid(out) {
			t.Fatalf("output is not valid JSON: %q from %q", out, data)
		}
		var v any
		dec := json.NewDecoder(strings.NewReader(string(out)))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		msgs, ok := v.([]any)
		if !ok {
			msgs = []any{v}
		}
		var in any
		inDec := json.NewDecoder(strings.NewReader(string(data)))
		inDec.UseNumber()
		if err := inDec.Decode(&in); err != nil {
			t.Fatalf("input %q refused by encoding/json but filtered: %v", data, err)
		}
		inMsgs, ok := in.([]any)
		if !ok {
			inMsgs = []any{in}
		}
		for i, m := range msgs {
			obj, _ := m.(map[string]any)
			res, _ := obj["result"].(map[string]any)
			tools, _ := res["tools"].([]any)
			// The tools kept are exactly the named ones not hidden, in order.
			inObj, _ := inMsgs[i].(map[string]any)
			inRes, _ := inObj["result"].(map[string]any)
			if inTools, isList := inRes["tools"].([]any); isList {
				var wantNames, gotNames []string
				for _, e := range inTools {
					tool, _ := e.(map[string]any)
					if name, ok := tool["name"].(string); ok && !strings.HasPrefix(name, "h") {
						wantNames = append(wantNames, name)
					}
				}
				for _, e := range tools {
					tool, _ := e.(map[string]any)
					name, _ := tool["name"].(string)
					gotNames = append(gotNames, name)
				}
				if !reflect.DeepEqual(wantNames, gotNames) && (len(wantNames) > 0 || len(gotNames) > 0) {
					t.Fatalf("tools %q kept, want %q: %q from %q", gotNames, wantNames, out, data)
				}
			}
			for _, e := range tools {
				tool, _ := e.(map[string]any)
				for k, val := range tool {
					if strings.EqualFold(k, "securitySchemes") {
						if b, _ := json.Marshal(val); string(b) != want || k != "securitySchemes" {
							t.Fatalf("tool %v keeps %s=%s: %q from %q", tool, k, b, out, data)
						}
					}
				}
				meta, _ := tool["_meta"].(map[string]any)
				if b, _ := json.Marshal(meta["securitySchemes"]); string(b) != want {
					t.Fatalf("tool %v: _meta.securitySchemes %s: %q from %q", tool, b, out, data)
				}
				if b, _ := json.Marshal(tool["securitySchemes"]); string(b) != want {
					t.Fatalf("tool %v: securitySchemes %s: %q from %q", tool, b, out, data)
				}
			}
		}
	})
}
