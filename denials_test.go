package mcpauth

import "testing"

// TestDenialsDistinct: every denial has its row (a status and a label), and no two share a
// label: logs, {http.auth.mcp.error_reason} and audit events tell them apart. Branches that
// each add denials meet here.
func TestDenialsDistinct(t *testing.T) {
	seen := map[string]denial{}
	for d := range numDenials {
		info := denials[d]
		if info.status == 0 || info.label == "" {
			t.Errorf("denial %d has no row in the table: %+v", d, info)
			continue
		}
		if prev, ok := seen[info.label]; ok {
			t.Errorf("denials %d and %d share the label %q", prev, d, info.label)
		}
		seen[info.label] = d
	}
}
