package mcpjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

func readRPCString(body string) ([]Message, bool, error) {
	var p jsonReader
	return p.readRPC([]byte(body), nil)
}

// TestReadRPCRefused: every body that two parsers could read differently, or that is not
// JSON-RPC, is refused.
func TestReadRPCRefused(t *testing.T) {
	cases := []struct {
		name, body string
		want       error
	}{
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"a"}}`, errJSONDuplicate},
		{"duplicate method by escape", `{"jsonrpc":"2.0","id":1,"method":"tools/list","\u006dethod":"tools/call","params":{"name":"a"}}`, errJSONDuplicate},
		{"duplicate name in params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, errJSONDuplicate},
		{"duplicate params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}`, errJSONDuplicate},
		{"duplicate deep in arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":{"y":1,"y":2}}}}`, errJSONDuplicate},
		{"duplicate in array element", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"l":[{"k":1,"k":1}]}}}`, errJSONDuplicate},
		{"duplicate among many keys", `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"c":0}}`, errJSONDuplicate},
		{"duplicate jsonrpc", `{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}`, errJSONDuplicate},
		// completion/complete: params.ref is read as strictly as params.name.
		{"completion duplicate ref name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"secret"},"argument":{"name":"x","value":""}}}`, errJSONDuplicate},
		{"completion duplicate ref uri", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///a","uri":"file:///secret/{x}"},"argument":{"name":"x","value":""}}}`, errJSONDuplicate},
		{"completion duplicate ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a"},"ref":{"type":"ref/prompt","name":"secret"}}}`, errJSONDuplicate},
		{"completion duplicate ref type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","type":"ref/prompt","name":"secret","uri":"file:///a"}}}`, errJSONDuplicate},
		{"completion Ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a"},"Ref":{"type":"ref/prompt","name":"secret"}}}`, errRPCKeyCase},
		{"completion ref Name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","Name":"secret"}}}`, errRPCKeyCase},
		{"completion ref URI", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///a","URI":"file:///secret"}}}`, errRPCKeyCase},
		{"completion ref Type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"Type":"ref/prompt","name":"a"}}}`, errRPCKeyCase},
		{"completion without ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"argument":{"name":"x","value":""}}}`, errRPCRef},
		{"completion ref not an object", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":"ref/prompt"}}`, errRPCRef},
		{"completion unknown ref type", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"a"}}}`, errRPCRef},
		{"completion prompt without name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","uri":"a"}}}`, errRPCRef},
		{"completion resource uri not a string", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":["file:///secret"]}}}`, errRPCRef},
		{"invalid UTF-8 in name", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}", errJSONUTF8},
		{"overlong UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xc0\xafx\"}}", errJSONUTF8},
		{"invalid UTF-8 in key", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"\xfe\":1}", errJSONUTF8},
		{"lone high surrogate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\ud800"}}`, errJSONSurrogate},
		{"lone low surrogate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\udc00"}}`, errJSONSurrogate},
		{"BOM", "\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", errRPCNotMessage},
		{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"ping"}x`, errJSONSyntax},
		{"second value", `{"jsonrpc":"2.0","id":1,"method":"ping"} {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}}`, errJSONSyntax},
		{"trailing comma", `{"jsonrpc":"2.0","id":1,"method":"ping",}`, errJSONSyntax},
		{"raw control char", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\nng\"}", errJSONSyntax},
		{"bad escape", `{"jsonrpc":"2.0","id":1,"method":"p\xng"}`, errJSONSyntax},
		{"bad number", `{"jsonrpc":"2.0","id":01,"method":"ping"}`, errJSONSyntax},
		{"empty", ``, errRPCNotMessage},
		{"string", `"tools/call"`, errRPCNotMessage},
		{"empty batch", `[]`, errRPCNotMessage},
		{"batch of non-objects", `[1]`, errRPCNotMessage},
		{"no version", `{"id":1,"method":"ping"}`, errRPCVersion},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, errRPCVersion},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":["tools/call"]}`, errRPCMethod},
		{"method null", `{"jsonrpc":"2.0","id":1,"method":null}`, errRPCMethod},
		{"neither method nor id", `{"jsonrpc":"2.0","result":{}}`, errRPCNoID},
		{"case-variant key only", `{"jsonrpc":"2.0","Method":"tools/call","params":{"name":"a"}}`, errRPCKeyCase},
		{"case-variant method and params", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","Params":{"Name":"delete_all"}}`, errRPCKeyCase},
		{"name and Name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`, errRPCKeyCase},
		{"Name before name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"b","name":"a"}}`, errRPCKeyCase},
		{"Method beside method", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"ping"}`, errRPCKeyCase},
		{"long s folds to s", "{\"j\u017fonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", errRPCKeyCase},
		{"URI in resources/read params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"uri\":\"a\",\"URI\":\"x\"}}", errRPCKeyCase},
		{"URI in params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"URI\":\"x\"}}", errRPCKeyCase},
		{"ID", `{"jsonrpc":"2.0","ID":1,"id":2,"method":"ping"}`, errRPCKeyCase},
		{"tools/call without params", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, errRPCParams},
		{"tools/call params array", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}`, errRPCParams},
		{"tools/call name not string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`, errRPCParams},
		{"tools/call only Name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"a"}}`, errRPCKeyCase},
		{"resources/read without uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`, errRPCParams},
		{"resources/subscribe without uri", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}`, errRPCParams},
		{"resources/unsubscribe with a number uri", `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":1}}`, errRPCParams},
		{"Uri in resources/subscribe params", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"a","Uri":"x"}}`, errRPCKeyCase},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"x","params":` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + `}`, errJSONDepth},
		{"batch with one bad element", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","name":"b"}}]`, errJSONDuplicate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readRPCString(tc.body)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReadRPCAccepted: what is accepted is read as a case-sensitive, strict server reads it.
func TestReadRPCAccepted(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		batch bool
		want  []Message
	}{
		{"custom method with a URI key", `{"jsonrpc":"2.0","id":1,"method":"x/custom","params":{"URI":"a","Name":"b"}}`, false,
			[]Message{{Method: "x/custom", HasMethod: true}}},
		{"tools/call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`, false,
			[]Message{{Method: "tools/call", HasMethod: true, Name: "read_file"}}},
		{"params before method", `{"params":{"name":"x"},"method":"tools/call","id":"a","jsonrpc":"2.0"}`, false,
			[]Message{{Method: "tools/call", HasMethod: true, Name: "x"}}},
		{"escaped method and name", `{"jsonrpc":"2.0","id":1,"method":"tools\/c\u0061ll","params":{"name":"del\u0065te_\u00e9\ud83d\ude00"}}`, false,
			[]Message{{Method: "tools/call", HasMethod: true, Name: "delete_é😀"}}},
		{"resources/read", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`, false,
			[]Message{{Method: "resources/read", HasMethod: true, Name: "file:///etc/passwd"}}},
		{"resources/subscribe", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///etc/passwd"}}`, false,
			[]Message{{Method: "resources/subscribe", HasMethod: true, Name: "file:///etc/passwd"}}},
		{"resources/unsubscribe", `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"file:///etc/passwd"}}`, false,
			[]Message{{Method: "resources/unsubscribe", HasMethod: true, Name: "file:///etc/passwd"}}},
		{"prompts/get", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{}}}`, false,
			[]Message{{Method: "prompts/get", HasMethod: true, Name: "p"}}},
		{"completion on a prompt", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"review"},"argument":{"name":"lang","value":"g"}}}`, false,
			[]Message{{Method: "completion/complete", HasMethod: true, Name: "review", Ref: RefPrompt}}},
		{"completion on a template", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"argument":{"name":"n","value":""},"ref":{"uri":"file:///docs/{n}","type":"ref/resource"}}}`, false,
			[]Message{{Method: "completion/complete", HasMethod: true, Name: "file:///docs/{n}", Ref: RefResource}}},
		{"ref elsewhere means nothing", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Ref":1,"ref":{"Name":"b"}}}`, false,
			[]Message{{Method: "tools/call", HasMethod: true, Name: "a"}}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, false,
			[]Message{{Method: "notifications/initialized", HasMethod: true}}},
		{"response", `{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`, false, []Message{{}}},
		{"whitespace", " \r\n\t{ \"jsonrpc\" : \"2.0\" , \"id\" : -1.5e+3 , \"method\" : \"ping\" } \n", false,
			[]Message{{Method: "ping", HasMethod: true}}},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}}]`, true,
			[]Message{{Method: "tools/call", HasMethod: true, Name: "a"}, {Method: "tools/call", HasMethod: true, Name: "b"}}},
		{"many distinct keys", `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":{"a":1}}}`, false,
			[]Message{{Method: "x", HasMethod: true}}},
		{"same key in sibling objects", `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":{"k":1},"b":{"k":1},"k":[{"k":1},{"k":2}]}}`, false,
			[]Message{{Method: "x", HasMethod: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs, batch, err := readRPCString(tc.body)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if batch != tc.batch || len(msgs) != len(tc.want) {
				t.Fatalf("batch=%v msgs=%+v, want batch=%v %+v", batch, msgs, tc.batch, tc.want)
			}
			for i := range msgs {
				if msgs[i] != tc.want[i] {
					t.Errorf("message %d = %+v, want %+v", i, msgs[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckMCPHeaders(t *testing.T) {
	call := []Message{{Method: "tools/call", HasMethod: true, Name: "a"}}
	list := []Message{{Method: "tools/list", HasMethod: true}}
	cases := []struct {
		name         string
		method, mcpn []string
		msgs         []Message
		batch        bool
		ok           bool
	}{
		{"no headers", nil, nil, call, false, true},
		{"agree", []string{"tools/call"}, []string{"a"}, call, false, true},
		{"method only", []string{"tools/list"}, nil, list, false, true},
		{"method differs", []string{"tools/list"}, []string{"a"}, call, false, false},
		{"name differs", []string{"tools/call"}, []string{"b"}, call, false, false},
		{"name case differs", []string{"tools/call"}, []string{"A"}, call, false, false},
		{"name on unnamed method", []string{"tools/list"}, []string{"a"}, list, false, false},
		{"two method headers", []string{"tools/call", "tools/call"}, nil, call, false, false},
		{"batch", []string{"tools/call"}, nil, call, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckMCPHeaders(tc.method, tc.mcpn, tc.msgs, tc.batch)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzReadRPC checks the reader against encoding/json and the MCP SDK's own decoder: what it
// accepts is valid JSON and valid UTF-8, and every parser finds the same method and name.
func FuzzReadRPC(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u0062"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"x"}}]`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[1,2.5e3,true,null,"\ud83d\ude00"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var p jsonReader
		msgs, batch, err := p.readRPC(body, nil)
		if err != nil {
			return
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("accepted invalid JSON or UTF-8: %q", body)
		}
		var raws []json.RawMessage
		if batch {
			if err := json.Unmarshal(body, &raws); err != nil {
				t.Fatal(err)
			}
		} else {
			raws = []json.RawMessage{body}
		}
		if len(raws) != len(msgs) {
			t.Fatalf("%d messages, encoding/json sees %d", len(msgs), len(raws))
		}
		for i, raw := range raws {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			method, _ := m["method"].(string)
			if method != msgs[i].Method {
				t.Fatalf("method %q, encoding/json sees %q", msgs[i].Method, method)
			}
			// The SDK refuses some ids the reader lets through (the server answers those);
			// where it reads a message, it must read the same one.
			sdk, err := jsonrpc.DecodeMessage(raw)
			if err == nil {
				if req, ok := sdk.(*jsonrpc.Request); ok != msgs[i].HasMethod || (ok && req.Method != msgs[i].Method) {
					t.Fatalf("SDK sees %#v, reader %+v", sdk, msgs[i])
				}
			}
			params, _ := m["params"].(map[string]any)
			key := "name"
			if method == MethodResourcesRead {
				key = "uri"
			}
			switch method {
			case MethodToolsCall, MethodPromptsGet, MethodResourcesRead:
				if name, _ := params[key].(string); name != msgs[i].Name {
					t.Fatalf("name %q, encoding/json sees %q", msgs[i].Name, name)
				}
			}
		}
	})
}
