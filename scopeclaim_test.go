package mcpauth

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestScopeClaimJSON: scope_claim is read as a string (one claim, as before) or an array, and
// written back as a string when it names one claim, so adapted Caddyfiles read as before.
func TestScopeClaimJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ClaimNames
		out  string
	}{
		{`"scp"`, ClaimNames{"scp"}, `"scp"`},
		{`""`, nil, ``},
		{`null`, nil, ``},
		{`["scp"]`, ClaimNames{"scp"}, `"scp"`},
		{`["scp","roles"]`, ClaimNames{"scp", "roles"}, `["scp","roles"]`},
	} {
		var h struct {
			ScopeClaim ClaimNames `json:"scope_claim,omitempty"`
		}
		if err := json.Unmarshal([]byte(`{"scope_claim":`+tc.in+`}`), &h); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !slices.Equal(h.ScopeClaim, tc.want) {
			t.Errorf("%s: read %q, want %q", tc.in, h.ScopeClaim, tc.want)
		}
		want := `{}`
		if tc.out != "" {
			want = `{"scope_claim":` + tc.out + `}`
		}
		b, err := json.Marshal(h)
		if err != nil || string(b) != want {
			t.Errorf("%s: written %s %v, want %s", tc.in, b, err, tc.out)
		}
	}
	for _, bad := range []string{`7`, `{"a":1}`, `["scp",1]`} {
		var c ClaimNames
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s: read as %q, want an error", bad, c)
		}
	}
	if b, _ := json.Marshal(struct {
		C ClaimNames `json:"scope_claim,omitempty"`
	}{}); string(b) != `{}` {
		t.Errorf("no claim written as %s", b)
	}
}
