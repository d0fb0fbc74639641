package mcpjson

import "slices"

// securitySchemes on the tools of a tools/list answer (MCP Apps per-tool authorization, the
// Apps SDK's per-tool securitySchemes): each tool kept in the list is written back with
// `securitySchemes` set, at its top level and in `_meta.securitySchemes` (where the Apps SDK
// reads it), to the value the resource computes from its own rules, replacing what the
// server said. The other members keep their bytes (members are rejoined with "," only).

// The tool keys the rewrite writes; their case variants are refused, as encoding/json-based
// clients would read them as the same field.
var (
	schemesKeys = []string{"securitySchemes"}
	metaKeys    = []string{"_meta"}
)

// edit is a change to a rewritten entry: data[start:end] is cut, and replaced as kind says.
type edit struct {
	start, end int
	kind       editKind
}

type editKind uint8

const (
	editCut         editKind = iota // the server's securitySchemes member, with a comma
	editMetaInsert                  // the resource's securitySchemes, first in _meta
	editMetaReplace                 // a _meta that is no object, replaced by one
)

// appendToolEntry reads a tool entry of a tools/list result and appends to dst the entry
// rewritten with the securitySchemes schemes(name) returns, when the entry is an object with
// a string name that keep accepts. It returns dst and whether the entry was appended. The
// entry keeps its bytes but for a few edits: its securitySchemes members (top level and in
// _meta) are cut out, and the resource's are put first in the entry and in _meta (a _meta
// that is no object is replaced by one, a missing one added).
func (p *jsonReader) appendToolEntry(dst []byte, schemes func(name string) []byte, keep func(name string) bool) ([]byte, bool, error) {
	if p.peek() != '{' {
		return dst, false, p.value()
	}
	open := p.pos
	var (
		name      string
		named     bool
		drop      [2]edit // the server's securitySchemes, top level and in _meta
		nDrop     int
		metaOpen  = -1 // after the '{' of an object _meta
		metaOther bool // that _meta has members besides securitySchemes
		metaValue = edit{start: -1}
	)
	f, err := p.beginObject()
	if err != nil {
		return dst, false, err
	}
	for {
		key, ks, ok, err := p.nextKey(&f)
		if err != nil {
			return dst, false, err
		}
		if !ok {
			break
		}
		if foldsTo(key, entryKeyNames[ListTools]) || foldsTo(key, schemesKeys) || foldsTo(key, metaKeys) {
			return dst, false, errRPCKeyCase
		}
		switch {
		case string(key) == "name" && p.peek() == '"':
			v, err := p.stringValue()
			if err != nil {
				return dst, false, err
			}
			name, named = string(v), true
		case string(key) == "_meta" && p.peek() == '{':
			metaOpen = p.pos + 1
			mf, err := p.beginObject()
			if err != nil {
				return dst, false, err
			}
			for {
				key, ks, ok, err := p.nextKey(&mf)
				if err != nil {
					return dst, false, err
				}
				if !ok {
					break
				}
				if foldsTo(key, schemesKeys) {
					return dst, false, errRPCKeyCase
				}
				if string(key) == "securitySchemes" {
					err = p.dropMember(&drop[nDrop], ks)
					nDrop++
				} else {
					metaOther = true
					err = p.value()
				}
				if err != nil {
					return dst, false, err
				}
			}
		case string(key) == "_meta":
			p.skipSpace()
			vs := p.pos
			if err := p.value(); err != nil {
				return dst, false, err
			}
			metaValue = edit{start: vs, end: p.pos}
		case string(key) == "securitySchemes":
			if err := p.dropMember(&drop[nDrop], ks); err != nil {
				return dst, false, err
			}
			nDrop++
		default:
			if err := p.value(); err != nil {
				return dst, false, err
			}
		}
	}
	if !named || !keep(name) {
		return dst, false, nil
	}
	value := schemes(name)
	// The resource's securitySchemes first (and _meta, when the entry has none), then the
	// entry's own bytes with the edits: the entry has a name besides, so a member follows.
	dst = append(dst, `{"securitySchemes":`...)
	dst = append(dst, value...)
	var eb [3]edit
	edits := append(eb[:0], drop[:nDrop]...)
	switch {
	case metaOpen >= 0:
		edits = append(edits, edit{start: metaOpen, end: metaOpen, kind: editMetaInsert})
	case metaValue.start >= 0:
		metaValue.kind = editMetaReplace
		edits = append(edits, metaValue)
	default:
		dst = append(dst, `,"_meta":{"securitySchemes":`...)
		dst = append(dst, value...)
		dst = append(dst, '}')
	}
	dst = append(dst, ',')
	// By position; an insertion goes before a cut that starts where it does.
	slices.SortFunc(edits, func(a, b edit) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.end - b.end
	})
	at := open + 1
	for _, e := range edits {
		dst = append(dst, p.data[at:e.start]...)
		switch e.kind {
		case editMetaInsert:
			dst = append(dst, `"securitySchemes":`...)
			dst = append(dst, value...)
			if metaOther {
				dst = append(dst, ',')
			}
		case editMetaReplace:
			dst = append(dst, `{"securitySchemes":`...)
			dst = append(dst, value...)
			dst = append(dst, '}')
		}
		at = e.end
	}
	return append(dst, p.data[at:p.pos]...), true, nil
}

// nextKey is nextMember that also returns the offset where the key starts, past the ','
// that separates it from the previous member.
func (p *jsonReader) nextKey(f *objFrame) ([]byte, int, bool, error) {
	p.skipSpace()
	ks := p.pos
	if !f.first && ks < len(p.data) && p.data[ks] == ',' {
		ks++
		for ks < len(p.data) && isJSONSpace(p.data[ks]) {
			ks++
		}
	}
	key, ok, err := p.nextMember(f)
	return key, ks, ok, err
}

// dropMember reads the value of the member whose key starts at ks and records in e the bytes
// that remove it with one of its commas: the one before it or, for the first member, the one
// after it.
func (p *jsonReader) dropMember(e *edit, ks int) error {
	// The comma before the key, if any, is the last non-space byte before ks.
	before := ks - 1
	for before >= 0 && isJSONSpace(p.data[before]) {
		before--
	}
	if err := p.value(); err != nil {
		return err
	}
	if before >= 0 && p.data[before] == ',' {
		*e = edit{start: before, end: p.pos}
	} else if p.peek() == ',' {
		*e = edit{start: ks, end: p.pos + 1}
	} else {
		*e = edit{start: ks, end: p.pos}
	}
	return nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
