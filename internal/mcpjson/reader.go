package mcpjson

import (
	"bytes"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonReader is a strict, allocation-light JSON reader over a complete body. It validates
// RFC 8259 grammar, UTF-8, escapes, and key uniqueness in every object at every depth.
type jsonReader struct {
	data  []byte
	pos   int
	depth int
	// keys holds the keys of every open object, innermost last; each object remembers where
	// its own keys start. Keys without escapes are views into data; decoded keys live in arena.
	keys  [][]byte
	arena []byte
	// str is scratch space for a decoded string value.
	str []byte
	// splices is scratch space for the edits of a filtered answer (FilterListsJSON).
	splices []splice
	// loneSurrogates accepts unpaired UTF-16 surrogate escapes (decoded as U+FFFD). Only for
	// reading server answers: servers in JavaScript or Python emit them, and such a string
	// can never spell a key the filter looks for. Requests stay strict.
	loneSurrogates bool
}

// objFrame is one open object: where its keys start in jsonReader.keys, and a set of them
// once there are too many to compare one by one.
type objFrame struct {
	start int
	set   map[string]struct{}
	first bool
}

// linearKeys is how many keys an object may have before duplicates are found with a map.
const linearKeys = 8

func (p *jsonReader) reset(data []byte) {
	p.loneSurrogates = false
	p.data = data
	p.pos = 0
	p.depth = 0
	p.keys = p.keys[:0]
	p.arena = p.arena[:0]
}

func (p *jsonReader) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (p *jsonReader) peek() byte {
	p.skipSpace()
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// end checks that only whitespace is left.
func (p *jsonReader) end() error {
	p.skipSpace()
	if p.pos != len(p.data) {
		return errJSONSyntax
	}
	return nil
}

// beginObject consumes '{' and opens a key frame.
func (p *jsonReader) beginObject() (objFrame, error) {
	if p.peek() != '{' {
		return objFrame{}, errJSONSyntax
	}
	p.pos++
	p.depth++
	if p.depth > maxJSONDepth {
		return objFrame{}, errJSONDepth
	}
	return objFrame{start: len(p.keys), first: true}, nil
}

// nextMember reads the next key and its ':' and reports true, or consumes the closing '}'
// and reports false. A key already seen in this object is an error.
func (p *jsonReader) nextMember(f *objFrame) ([]byte, bool, error) {
	c := p.peek()
	if f.first {
		f.first = false
		if c == '}' {
			p.pos++
			p.closeObject(f)
			return nil, false, nil
		}
	} else {
		switch c {
		case '}':
			p.pos++
			p.closeObject(f)
			return nil, false, nil
		case ',':
			p.pos++
			c = p.peek()
		default:
			return nil, false, errJSONSyntax
		}
	}
	if c != '"' {
		return nil, false, errJSONSyntax
	}
	raw, escaped, err := p.rawString()
	if err != nil {
		return nil, false, err
	}
	key := raw
	if escaped {
		start := len(p.arena)
		p.arena, err = unescape(p.arena, raw)
		if err != nil {
			return nil, false, err
		}
		key = p.arena[start:len(p.arena):len(p.arena)]
	}
	if err := p.addKey(f, key); err != nil {
		return nil, false, err
	}
	if p.peek() != ':' {
		return nil, false, errJSONSyntax
	}
	p.pos++
	return key, true, nil
}

func (p *jsonReader) addKey(f *objFrame, key []byte) error {
	if f.set != nil {
		if _, dup := f.set[string(key)]; dup {
			return errJSONDuplicate
		}
		f.set[string(key)] = struct{}{}
		return nil
	}
	own := p.keys[f.start:]
	for _, k := range own {
		if bytes.Equal(k, key) {
			return errJSONDuplicate
		}
	}
	if len(own) >= linearKeys {
		f.set = make(map[string]struct{}, 2*linearKeys)
		for _, k := range own {
			f.set[string(k)] = struct{}{}
		}
		f.set[string(key)] = struct{}{}
		return nil
	}
	p.keys = append(p.keys, key)
	return nil
}

func (p *jsonReader) closeObject(f *objFrame) {
	p.keys = p.keys[:f.start]
	p.depth--
	if f.start == 0 {
		p.arena = p.arena[:0]
	}
}

// value validates any JSON value.
func (p *jsonReader) value() error {
	switch p.peek() {
	case '{':
		f, err := p.beginObject()
		if err != nil {
			return err
		}
		for {
			_, ok, err := p.nextMember(&f)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if err := p.value(); err != nil {
				return err
			}
		}
	case '[':
		return p.array(nil)
	case '"':
		_, _, err := p.rawString()
		return err
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	default:
		return p.number()
	}
}

// array validates an array, calling elem (when not nil) to read each element instead of
// value. elem gets the element's index.
func (p *jsonReader) array(elem func(i int) error) error {
	if p.peek() != '[' {
		return errJSONSyntax
	}
	p.pos++
	p.depth++
	if p.depth > maxJSONDepth {
		return errJSONDepth
	}
	if p.peek() == ']' {
		p.pos++
		p.depth--
		return nil
	}
	for i := 0; ; i++ {
		var err error
		if elem != nil {
			err = elem(i)
		} else {
			err = p.value()
		}
		if err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return nil
		default:
			return errJSONSyntax
		}
	}
}

func (p *jsonReader) literal(lit string) error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return errJSONSyntax
	}
	p.pos += len(lit)
	return nil
}

// number validates -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (p *jsonReader) number() error {
	d, i := p.data, p.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	default:
		return errJSONSyntax
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return errJSONSyntax
		}
		for ; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return errJSONSyntax
		}
		for ; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	p.pos = i
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// strSafe marks the bytes a string may hold as is: not '"', '\\', a control character, or a
// byte of a multi-byte UTF-8 sequence.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// rawString validates a string at the current position and returns its contents between the
// quotes, and whether they hold escapes.
func (p *jsonReader) rawString() ([]byte, bool, error) {
	d := p.data
	if p.pos >= len(d) || d[p.pos] != '"' {
		return nil, false, errJSONSyntax
	}
	start := p.pos + 1
	escaped := false
	i := start
	for {
		for i < len(d) && strSafe[d[i]] {
			i++
		}
		if i >= len(d) {
			return nil, false, errJSONSyntax
		}
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return d[start:i], escaped, nil
		case c == '\\':
			escaped = true
			n, err := escapeLen(d[i:], p.loneSurrogates)
			if err != nil {
				return nil, false, err
			}
			i += n
		case c < 0x20:
			return nil, false, errJSONSyntax
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, false, errJSONUTF8
			}
			i += size
		}
	}
}

// escapeLen validates the escape sequence at the start of s and returns its length. A \u
// escape of a UTF-16 surrogate must be a high one followed by a low one, unless lone ones
// are allowed.
func escapeLen(s []byte, lone bool) (int, error) {
	if len(s) < 2 {
		return 0, errJSONSyntax
	}
	switch s[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		r, ok := hex4(s[2:])
		if !ok {
			return 0, errJSONSyntax
		}
		if !utf16.IsSurrogate(r) {
			return 6, nil
		}
		if r < 0xDC00 && len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if r2, ok := hex4(s[8:]); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
				return 12, nil
			}
		}
		if lone {
			return 6, nil
		}
		return 0, errJSONSurrogate
	}
	return 0, errJSONSyntax
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends the decoded contents of a string already validated by rawString.
func unescape(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw[i+2:])
			if utf16.IsSurrogate(r) {
				// A pair was validated by rawString; a lone one (allowed for server
				// answers only) becomes U+FFFD, as in Go's encoding/json.
				if r < 0xDC00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					if r2, ok := hex4(raw[i+8:]); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
						dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
						i += 12
						continue
					}
				}
				dst = utf8.AppendRune(dst, utf8.RuneError)
				i += 6
				continue
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst, nil
}

// stringValue reads a string value and returns its decoded contents, valid until the next
// call.
func (p *jsonReader) stringValue() ([]byte, error) {
	raw, escaped, err := p.rawString()
	if err != nil || !escaped {
		return raw, err
	}
	p.str, err = unescape(p.str[:0], raw)
	return p.str, err
}

// readerPool keeps readers, with their scratch space, across requests.
var readerPool = sync.Pool{New: func() any { return new(jsonReader) }}
